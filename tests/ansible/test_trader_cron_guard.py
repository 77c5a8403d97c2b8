"""The job guard's day and token rules, and the special sessions' dated entries, without a host.

The guard (roles/trader_cron/templates/simpletrader-job.j2) is rendered as the
role renders it and run with this interpreter; "today" is the clock's, so the
sessions here are dated from it. The dated entries come from the role's filter
plugin (roles/trader_cron/filter_plugins/trader_cron_sessions.py). On a test
host: the trader_cron molecule scenario and tests/e2e (the special session's day).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "trader_cron"
ZONE = ZoneInfo("Asia/Kolkata")


def load_filters() -> Any:
    spec = importlib.util.spec_from_file_location("trader_cron_sessions",
                                                  ROLE / "filter_plugins" / "trader_cron_sessions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sessions_filter = load_filters()


def today(offset: int = 0) -> str:
    return (dt.datetime.now(ZONE).date() + dt.timedelta(days=offset)).isoformat()


# --------------------------------------------------------------------------- the guard


class Guard:
    """The rendered guard, a workspace with one job script, a ready marker and a token."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.path = base / "simpletrader-job"
        text = (ROLE / "templates" / "simpletrader-job.j2").read_text()
        self.path.write_text(jinja2.Template(text, keep_trailing_newline=True).render(
            trader_cron_python=sys.executable, ansible_managed="rendered by a test"))
        self.workdir = base / "workdir"
        (self.workdir / "src").mkdir(parents=True)
        (self.workdir / "job.py").write_text("import pathlib\npathlib.Path('ran').write_text('yes')\n")
        self.ready = base / "ready.json"
        self.ready.write_text(json.dumps({"date": today(), "python": sys.executable, "release": "r1"}))
        self.token = self.workdir / "access_token.txt"
        self.token.write_text("t")
        self.config: dict[str, Any] = {
            "timezone": "Asia/Kolkata", "workdir": str(self.workdir), "ready_file": str(self.ready),
            "token_file": "access_token.txt", "token_fresh_after": "00:00", "token_check": "refuse",
            "jobs": {"pre-market-setup": "08:55", "trading": "09:14"}, "sessions": {},
        }

    def stale_token(self) -> None:
        yesterday = dt.datetime.now(ZONE) - dt.timedelta(days=1)
        os.utime(self.token, (yesterday.timestamp(), yesterday.timestamp()))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        (self.workdir / "ran").unlink(missing_ok=True)
        cfg = self.base / "jobs.json"
        cfg.write_text(json.dumps(self.config))
        return subprocess.run([sys.executable, str(self.path), "--config", str(cfg), *args],
                              capture_output=True, text=True, check=False)

    @property
    def ran(self) -> bool:
        return (self.workdir / "ran").exists()


@pytest.fixture
def guard(tmp_path: Path) -> Guard:
    return Guard(tmp_path)


def evening(jobs: dict[str, str], date: str | None = None) -> dict[str, Any]:
    return {date or today(): {"name": "Muhurat trading", "start": "18:00", "stop": "19:30", "jobs": jobs}}


def test_a_weekly_entry_on_an_ordinary_day_runs_the_job(guard: Guard) -> None:
    out = guard.run("trading", "job.py")
    assert out.returncode == 0, out.stdout
    assert guard.ran and "starting" in out.stdout and "finished job.py: exit 0" in out.stdout


def test_a_weekly_entry_skips_a_session_day_that_runs_the_job_at_another_time(guard: Guard) -> None:
    guard.config["sessions"] = evening({"trading": "18:14"})
    guard.ready.unlink()  # the skip comes first: no refusal for an unready workspace at 09:14
    out = guard.run("trading", "job.py")
    assert out.returncode == 0 and not guard.ran
    assert f"SKIPPED {today()} is a special session (Muhurat trading, 18:00-19:30); trading runs today at 18:14" \
        in out.stdout


def test_a_weekly_entry_skips_a_session_day_whose_hours_leave_the_job_out(guard: Guard) -> None:
    guard.config["sessions"] = evening({"trading": "18:14"})
    out = guard.run("pre-market-setup", "job.py")
    assert out.returncode == 0 and not guard.ran
    assert "pre-market-setup does not run today: its time 08:55 is outside the session's hours" in out.stdout


def test_a_weekly_entry_runs_on_a_session_day_at_its_own_time(guard: Guard) -> None:
    guard.config["sessions"] = evening({"trading": "09:14"})
    out = guard.run("trading", "job.py")
    assert out.returncode == 0 and guard.ran, out.stdout


def test_a_dated_entry_runs_on_its_date_only(guard: Guard) -> None:
    guard.config["sessions"] = evening({"trading": "18:14"})
    out = guard.run("--session", today(), "trading", "job.py")
    assert out.returncode == 0 and guard.ran, out.stdout
    last_year = today(-365)
    other = guard.run("--session", last_year, "trading", "job.py")
    assert other.returncode == 0 and not guard.ran
    assert f"SKIPPED this entry is for the special session of {last_year}; today is {today()}" in other.stdout


def test_a_dated_entry_still_needs_todays_sync(guard: Guard) -> None:
    guard.ready.write_text(json.dumps({"date": today(-1), "python": sys.executable}))
    out = guard.run("--session", today(), "trading", "job.py")
    assert out.returncode == 2 and not guard.ran
    assert "REFUSED workspace not ready" in out.stdout


@pytest.mark.parametrize("change", [lambda g: g.stale_token(), lambda g: g.token.unlink()],
                         ids=["stale", "missing"])
def test_token_check_refuse_warn_off(guard: Guard, change: Callable[[Guard], None]) -> None:
    change(guard)
    refused = guard.run("trading", "job.py")
    assert refused.returncode == 3 and not guard.ran
    assert "REFUSED" in refused.stdout and "token" in refused.stdout

    guard.config["token_check"] = "warn"
    warned = guard.run("trading", "job.py")
    assert warned.returncode == 0 and guard.ran, warned.stdout
    assert "WARNING" in warned.stdout and "(token_check: warn, so the job runs)" in warned.stdout

    guard.config["token_check"] = "off"
    off = guard.run("trading", "job.py")
    assert off.returncode == 0 and guard.ran, off.stdout
    assert "WARNING" not in off.stdout and "REFUSED" not in off.stdout


def test_a_fresh_token_is_no_warning(guard: Guard) -> None:
    guard.config["token_check"] = "warn"
    out = guard.run("trading", "job.py")
    assert out.returncode == 0 and "WARNING" not in out.stdout


def test_an_unknown_token_check_is_a_configuration_error(guard: Guard) -> None:
    guard.config["token_check"] = "maybe"
    out = guard.run("trading", "job.py")
    assert out.returncode == 4 and "bad configuration" in out.stdout and not guard.ran


# --------------------------------------------------------------------------- the dated entries

JOBS = [{"name": "pre-market-setup", "time": "08:55", "script": "src/setup/pre_market_setup.py"},
        {"name": "trading", "time": "09:14", "script": "src/setup/setup.py"}]


@pytest.mark.parametrize(("field", "date", "fires"), [
    ("1-5", "2026-11-09", True),   # a Monday
    ("1-5", "2026-11-08", False),  # a Sunday
    ("1,2,3,4,5", "2026-11-13", True),
    ("*", "2026-11-08", True),
    ("0", "2026-11-08", True),
    ("7", "2026-11-08", True),
    ("5-7", "2026-11-08", True),
    ("mon-fri", "2026-11-14", False),  # a Saturday
    ("sat,sun", "2026-11-14", True),
    ("*/2", "2026-11-10", True),   # Tuesday, day 2
    ("1-5/2", "2026-11-10", False),
])
def test_the_weekday_field_is_read_as_cron_reads_it(field: str, date: str, fires: bool) -> None:
    assert sessions_filter.weekday_fires(field, dt.date.fromisoformat(date)) is fires


def test_an_unreadable_weekday_field_stops_the_converge() -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="cannot read"):
        sessions_filter.weekday_fires("1-5;", dt.date(2026, 11, 9))


def test_dated_entries_only_where_the_weekly_entries_do_not_run_the_job() -> None:
    sessions = [
        # Sunday, the schedule's hours: both jobs at their usual times, which no weekly entry fires on a Sunday.
        {"date": "2026-11-08", "name": "Muhurat", "start": "08:45", "stop": "15:40",
         "jobs": {"pre-market-setup": "08:55", "trading": "09:14"}},
        # A weekday evening: trading at its own time; pre-market left out (outside the hours).
        {"date": "2026-11-10", "name": "Evening", "start": "18:00", "stop": "19:30", "jobs": {"trading": "18:14"}},
        # A weekday with its usual times: the weekly entries run them, no dated entry (both would take the lock).
        {"date": "2026-11-11", "name": "Normal", "start": "08:45", "stop": "15:40", "jobs": {"trading": "09:14"}},
        # Past: nothing.
        {"date": "2026-11-01", "name": "Past", "start": "18:00", "stop": "19:30", "jobs": {"trading": "18:14"}},
    ]
    entries = sessions_filter.session_entries(sessions, JOBS, "1,2,3,4,5", "2026-11-02")
    assert [(e["name"], e["minute"], e["hour"], e["day"], e["month"], e["script"]) for e in entries] == [
        ("pre-market-setup@2026-11-08", "55", "8", "8", "11", "src/setup/pre_market_setup.py"),
        ("trading@2026-11-08", "14", "9", "8", "11", "src/setup/setup.py"),
        ("trading@2026-11-10", "14", "18", "10", "11", "src/setup/setup.py"),
    ]
    # A job's own weekday field counts: trading weekly on Mondays only does not run Wednesday's session.
    own = [dict(JOBS[1], weekday="1")]
    assert [e["name"] for e in sessions_filter.session_entries(sessions[2:3], own, "1-5", "2026-11-02")] == [
        "trading@2026-11-11"]
    # The guard learns the sessions from today on.
    assert sorted(sessions_filter.guard_sessions(sessions, "2026-11-08")) == ["2026-11-08", "2026-11-10",
                                                                               "2026-11-11"]


def test_a_session_job_at_the_minute_of_another_jobs_entry_is_refused() -> None:
    """Every entry takes the lock before its guard decides: the weekly pre-market entry at 08:55, which only
    skips on the session's day, would make a dated trading entry at 08:55 exit 75."""
    monday = [{"date": "2026-11-09", "name": "Early", "start": "08:45", "stop": "15:40",
               "jobs": {"pre-market-setup": "08:40", "trading": "08:55"}}]
    with pytest.raises(AnsibleFilterError, match="trading at 08:55 is when pre-market-setup's entry fires that day"):
        sessions_filter.session_entries(monday, JOBS, "1,2,3,4,5", "2026-11-02")
    # Two jobs of one session at one minute, on a Sunday (no weekly entry fires): refused too.
    sunday = [dict(monday[0], date="2026-11-08", jobs={"pre-market-setup": "09:00", "trading": "09:00"})]
    with pytest.raises(AnsibleFilterError, match="trading at 09:00 is when pre-market-setup's entry"):
        sessions_filter.session_entries(sunday, JOBS, "1,2,3,4,5", "2026-11-02")


def test_weekly_entries_have_the_shape_of_the_dated_ones() -> None:
    own = [JOBS[0], dict(JOBS[1], weekday="1")]
    # A weekday of 0 (Sunday) is a weekday, not "none given".
    assert sessions_filter.weekly_entries([dict(JOBS[1], weekday=0)], "1-5")[0]["weekday"] == "0"
    weekly = sessions_filter.weekly_entries(own, "1,2,3,4,5")
    assert [(e["name"], e["job"], e["minute"], e["hour"], e["day"], e["month"], e["weekday"], e["date"])
            for e in weekly] == [
        ("pre-market-setup", "pre-market-setup", "55", "8", "*", "*", "1,2,3,4,5", ""),
        ("trading", "trading", "14", "9", "*", "*", "1", ""),
    ]
    dated = sessions_filter.session_entries([{"date": "2026-11-08", "jobs": {"trading": "09:14"}}], JOBS, "1-5",
                                            "2026-11-01")
    assert set(weekly[0]) == set(dated[0])  # one cron task installs both
    assert dated[0]["weekday"] == "*"


def test_a_session_naming_an_unknown_job_stops_the_converge() -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="not in trader_cron_jobs"):
        sessions_filter.session_entries([{"date": "2026-11-08", "jobs": {"closing": "18:30"}}], JOBS, "1-5",
                                        "2026-11-01")
