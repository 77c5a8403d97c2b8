"""``python -m provision config --json``: the checked stack config, defaults filled in, derived values added.

The playbooks read this instead of the raw YAML (playbooks/check_hosts.yml
runs it first, so a bad ``stack.yml`` stops ``ansible-playbook site.yml``
with the messages ``plan`` prints), and nothing is derived twice: the bucket's
full name, the EventBridge rules in UTC, the weekdays the cron jobs run on
and the job times of special sessions, and the closure script's timeout are
computed here, once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from provision.config import Config, bucket_name
from provision.cron import utc_schedule
from provision.rules import WEEKDAYS

VERSION = 1
#: What eod keeps for itself inside the stop function's command deadline: the lock wait (60 s) and the
#: upload (120 s). The closure script gets the rest, and at least a minute.
EOD_RESERVE_SECONDS = 180
MIN_CLOSURE_SECONDS = 60


def closure_timeout(cfg: Config) -> int:
    """How long the end-of-day routine lets the closure script run."""
    return max(cfg.schedule.command_timeout_seconds - EOD_RESERVE_SECONDS, MIN_CLOSURE_SECONDS)


def cron_weekdays(cfg: Config) -> str:
    """crontab's day-of-week field (0 = Sunday) of the weekly job entries: ``schedule.weekdays``."""
    return ",".join(str(d) for d in sorted((WEEKDAYS.index(w) + 1) % 7 for w in cfg.schedule.weekdays))


def session_jobs(cfg: Config) -> list[dict[str, Any]]:
    """Each special session's day: when each cron job runs (its own time, or its usual one if that falls
    inside the session's hours). The host gets a dated cron entry per job, and the job guard skips the
    weekly entry of that day when the time differs."""
    s = cfg.schedule
    found = []
    for session in cfg.calendar.special_sessions:
        start, stop = session.hours(s)
        jobs = {}
        for job in cfg.cron_jobs:
            at = session.jobs.get(job.name, job.time)
            if start < at < stop:
                jobs[job.name] = at
        found.append({"date": session.date, "name": session.name, "start": start, "stop": stop, "jobs": jobs})
    return found


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in ("raw", "path")}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if not isinstance(value, (str, int, float, bool, type(None))) else value


def export(cfg: Config, today: dt.date | None = None) -> dict[str, Any]:
    """The whole checked config as plain data, plus ``derived``."""
    from provision.schedule import rule_weekdays

    data = _plain(cfg)
    data["config_file"] = str(cfg.path)
    data["artifacts"] = {k: str(cfg.artifact_path(v)) for k, v in data["artifacts"].items()}
    s = cfg.schedule
    data["derived"] = {
        "bucket": bucket_name(cfg),
        "rules_utc": {kind: utc_schedule(t, rule_weekdays(cfg), s.timezone, today)[0]
                      for kind, t in (("start", s.start), ("stop", s.stop))},
        "cron_weekdays": cron_weekdays(cfg),
        "session_jobs": session_jobs(cfg),
        "closure_timeout_seconds": closure_timeout(cfg),
    }
    data["version"] = VERSION
    return dict(data)
