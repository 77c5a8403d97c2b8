"""The functions on a special session's day with hours of its own, with the token check off, and near the
end of the calendar's years."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import start
import stop
from fnhelpers import FakeClock, Stack, budget, checked_config, ist, new_stack, token_published_at
from st_runtime import Event

from devtools import localaws
from provision.trading_calendar import build_calendar

EVENING = "2026-11-12"  # a Thursday: the weekly rules fire, but the session has its own hours


def stack_with_session(tmp_path: Path, session: dict[str, str]) -> Stack:
    """A stack whose deployed calendar has this one special session."""
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(build_calendar(checked_config([], [session]), [2026, 2027])))
    return new_stack(path)


@pytest.fixture
def session_stack(emulator: localaws.MotoServer, tmp_path: Path) -> Stack:
    return stack_with_session(tmp_path, {"date": EVENING, "name": "Evening session", "start": "18:00",
                                         "stop": "19:00"})


def start_at(stack: Stack, hhmm: str, late: timedelta = timedelta(0), **event: Any) -> dict[str, Any]:
    """The start function invoked by an event for ``hhmm`` on EVENING's day, whose time is ``late`` after it."""
    when = ist(f"{EVENING} {hhmm}") + late
    clock = FakeClock(when + timedelta(seconds=5))
    return start.run_start(event=Event(time=when, **event), settings=stack.settings, ec2=stack.ec2,
                           ssm=stack.ssm, s3=stack.s3, sns=stack.sns, clock=clock, budget=budget(clock))


def stop_at(stack: Stack, hhmm: str, **event: Any) -> dict[str, Any]:
    when = ist(f"{EVENING} {hhmm}")
    clock = FakeClock(when + timedelta(seconds=5))
    return stop.run_stop(event=Event(time=when, **event), settings=stack.settings, ec2=stack.ec2,
                         ssm=stack.ssm, sns=stack.sns, clock=clock, budget=budget(clock))


def test_weekly_firings_do_nothing_on_a_session_with_its_own_hours(session_stack: Stack) -> None:
    stack = session_stack
    stack.stop_now()
    morning = start_at(stack, "08:45")
    assert morning["outcome"] == "skipped-session-hours" and morning["ok"]
    assert stack.state() == "stopped" and stack.commands() == []
    [note] = stack.notifications()
    assert "not now" in note["subject"] and "starts at 18:00 by its own schedule" in note["message"]

    evening = start_at(stack, "18:00", session=EVENING)  # the session's one-time schedule
    assert evening["outcome"] == "synced" and stack.state() == "running"

    afternoon = stop_at(stack, "15:40")  # the weekly stop must not end the evening session
    assert afternoon["outcome"] == "skipped-session-hours" and stack.state() == "running"
    done = stop_at(stack, "19:00", session=EVENING)
    assert done["outcome"] == "stopped" and stack.state() == "stopped"


def test_token_check_off_reads_no_manifest_and_warns_of_nothing(stack: Stack) -> None:
    token_published_at(stack, ist("2026-01-27 07:00"))  # yesterday's token: stale
    reads = stack.count(stack.s3, "s3.GetObject")
    stack.with_settings(token_check="off")
    when = ist("2026-01-28 08:45")
    clock = FakeClock(when + timedelta(seconds=5))
    result = start.run_start(event=Event(time=when), settings=stack.settings, ec2=stack.ec2, ssm=stack.ssm,
                             s3=stack.s3, sns=stack.sns, clock=clock, budget=budget(clock))
    assert result["outcome"] == "synced"
    assert not any("token" in w for w in result["warnings"]) and reads() == 0


def test_start_warns_when_the_calendar_runs_out(emulator: localaws.MotoServer, tmp_path: Path) -> None:
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(build_calendar(checked_config(), [2026])))  # 2026 only
    stack = new_stack(path)
    when = ist("2026-12-01 08:45")
    clock = FakeClock(when + timedelta(seconds=5))
    result = start.run_start(event=Event(time=when), settings=stack.settings, ec2=stack.ec2, ssm=stack.ssm,
                             s3=stack.s3, sns=stack.sns, clock=clock, budget=budget(clock))
    [warning] = [w for w in result["warnings"] if "trading calendar" in w]
    assert "covers up to 2026-12-31 (30 days left)" in warning and "python -m provision up" in warning
    assert "trading calendar covers up to 2026-12-31" in stack.notifications()[0]["message"]


@pytest.mark.parametrize("late", [timedelta(seconds=6), timedelta(seconds=62)])
def test_the_weekly_start_of_a_session_that_keeps_it_starts_even_when_its_event_is_late(
        emulator: localaws.MotoServer, tmp_path: Path, late: timedelta) -> None:
    # The session starts at the weekly time and stops later: only its stop has a one-time schedule.
    stack = stack_with_session(tmp_path, {"date": EVENING, "name": "Late close", "start": "08:45", "stop": "19:00"})
    stack.stop_now()
    result = start_at(stack, "08:45", late=late)  # EventBridge's event: seconds, or a minute, after the rule's
    assert result["outcome"] == "synced" and stack.state() == "running"
