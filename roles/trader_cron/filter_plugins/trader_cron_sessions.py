"""``trader_cron_session_entries``: the dated cron entries the special sessions need.

A special session's day (``trader_cron_sessions``, the stack config's
``derived.session_jobs``) gives each job the time it runs that day. The weekly
entry of a job runs it on that day only when it fires that day at that very
time (the guard skips it otherwise); every other job of the session gets an
entry of its own, dated (minute, hour, day of month, month), which the guard
runs on that date only. A dated entry is never made for a minute at which the
weekly entry fires too: both would take the lock at once, and one would fail;
a session job at the minute of another job's entry that day is refused.

Sessions before ``today`` (the host's date in the exchange's zone) get no
entries: the role removes what is no longer wanted.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ansible.errors import AnsibleFilterError

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_PART = re.compile(r"^(?P<range>\*|(?P<lo>\w+)(-(?P<hi>\w+))?)(/(?P<step>\d+))?$")


def _day(text: str, field: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text) % 7
    if text.lower() in DAY_NAMES:
        return DAY_NAMES.index(text.lower())
    raise AnsibleFilterError(f"cron day-of-week field {field!r}: {text!r} is not a day (0-7 or sun-sat)")


def weekday_fires(field: str, day: dt.date) -> bool:
    """Whether a cron day-of-week ``field`` (``*``, ``1-5``, ``1,3,5``, ``mon-fri``, ``*/2``) includes ``day``."""
    sunday_based = (day.weekday() + 1) % 7
    for part in str(field).split(","):
        match = _PART.match(part.strip())
        if not match:
            raise AnsibleFilterError(f"cron day-of-week field {field!r}: cannot read {part!r}")
        if match.group("range") == "*":
            lo, hi = 0, 6
        else:
            lo = _day(match.group("lo"), field)
            hi = _day(match.group("hi"), field) if match.group("hi") else lo
            if match.group("hi") and hi == 0:
                hi = 7  # 5-7, fri-sun: Friday to Sunday
        step = int(match.group("step") or 1)
        if any(d % 7 == sunday_based for d in range(lo, hi + 1, step)):
            return True
    return False


def session_entries(sessions: list[dict[str, Any]], jobs: list[dict[str, Any]], weekday: str,
                    today: str) -> list[dict[str, Any]]:
    """One dated entry per session from ``today`` on and job that the weekly entry does not run then."""
    by_name = {job["name"]: job for job in jobs}
    entries = []
    for session in sessions:
        if str(session["date"]) < today:
            continue
        day = dt.date.fromisoformat(str(session["date"]))
        # Every entry takes the lock before its guard decides (a weekly one that skips that day too): the
        # minutes the weekly entries fire that day, and the session's own, are each one job's.
        taken = {str(j["time"]): str(j["name"]) for j in jobs if weekday_fires(job_weekday(j, weekday), day)}
        for name, at in sorted((session.get("jobs") or {}).items()):
            job = by_name.get(name)
            if job is None:
                raise AnsibleFilterError(f"special session {session['date']} names job {name!r}, which is not in "
                                         "trader_cron_jobs")
            if at == job["time"] and weekday_fires(job_weekday(job, weekday), day):
                continue  # the weekly entry runs it then
            if taken.get(at, name) != name:
                raise AnsibleFilterError(f"special session {session['date']}: {name} at {at} is when {taken[at]}'s "
                                         f"entry fires that day and holds the job lock (flock -n), so {name} would "
                                         "not run (exit 75); choose another minute")
            taken[at] = name
            hour, minute = (int(x) for x in at.split(":"))
            entries.append({"name": f"{name}@{day.isoformat()}", "job": name, "script": job["script"],
                            "date": day.isoformat(), "time": at, "minute": str(minute), "hour": str(hour),
                            "day": str(day.day), "month": str(day.month), "weekday": "*"})
    return entries


def job_weekday(job: dict[str, Any], weekday: str) -> str:
    """A job's own day-of-week field (0, Sunday, included), else the schedule's."""
    own = job.get("weekday")
    return weekday if own is None or own == "" else str(own)


def weekly_entries(jobs: list[dict[str, Any]], weekday: str) -> list[dict[str, Any]]:
    """The jobs' weekly entries, in the shape of ``session_entries``' (every day of month, every month)."""
    entries = []
    for job in jobs:
        hour, minute = (int(x) for x in str(job["time"]).split(":"))
        entries.append({"name": job["name"], "job": job["name"], "script": job["script"], "date": "",
                        "time": job["time"], "minute": str(minute), "hour": str(hour), "day": "*", "month": "*",
                        "weekday": job_weekday(job, weekday)})
    return entries


def guard_sessions(sessions: list[dict[str, Any]], today: str) -> dict[str, Any]:
    """The guard's ``sessions``: by date, from ``today`` on."""
    return {str(s["date"]): {"name": s.get("name", ""), "start": s.get("start", ""), "stop": s.get("stop", ""),
                             "jobs": dict(s.get("jobs") or {})}
            for s in sessions if str(s["date"]) >= today}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"trader_cron_session_entries": session_entries, "trader_cron_guard_sessions": guard_sessions,
                "trader_cron_weekly_entries": weekly_entries}
