"""Exchange-local times to EventBridge UTC crons, and our own cron validation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from provhelpers import base_config, write_config

from provision import config
from provision.cron import CronError, utc_schedule, validate_cron
from provision.schedule import rule_weekdays

WEEK = ["MON", "TUE", "WED", "THU", "FRI"]


@pytest.mark.parametrize(
    ("local", "zone", "weekdays", "expected"),
    [
        ("08:45", "Asia/Kolkata", WEEK, "cron(15 3 ? * MON-FRI *)"),
        ("15:40", "Asia/Kolkata", WEEK, "cron(10 10 ? * MON-FRI *)"),
        ("05:29", "Asia/Kolkata", WEEK, "cron(59 23 ? * SUN-THU *)"),  # previous UTC day
        ("05:30", "Asia/Kolkata", WEEK, "cron(0 0 ? * MON-FRI *)"),
        ("20:00", "America/Bogota", WEEK, "cron(0 1 ? * TUE-SAT *)"),  # UTC-5: next UTC day
        ("09:00", "UTC", ["MON", "WED"], "cron(0 9 ? * MON,WED *)"),
        ("09:00", "Asia/Kolkata", ["SAT", "SUN"], "cron(30 3 ? * SUN,SAT *)"),
        ("09:00", "Asia/Kathmandu", ["FRI"], "cron(15 3 ? * FRI *)"),  # +05:45
    ],
)
def test_utc_schedule(local: str, zone: str, weekdays: list[str], expected: str) -> None:
    expr, _ = utc_schedule(local, weekdays, zone, dt.date(2026, 11, 27))
    assert expr == expected


def test_dst_zone_is_refused() -> None:
    with pytest.raises(CronError, match="daylight saving"):
        utc_schedule("09:15", WEEK, "Europe/London", dt.date(2026, 11, 27))


@pytest.mark.parametrize(
    "expr",
    [
        "cron(15 3 ? * MON-FRI *)",
        "cron(0/5 * * * ? *)",
        "cron(0 10 ? * 6L 2026-2027)",
        "cron(0 8 L * ? *)",
        "cron(0 8 ? JAN,FEB MON#1 *)",
    ],
)
def test_valid_crons(expr: str) -> None:
    validate_cron(expr)


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("cron(15 3 * * MON-FRI *)", "exactly one of day-of-month and day-of-week"),
        ("cron(15 3 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(60 3 ? * MON *)", "minutes"),
        ("cron(15 24 ? * MON *)", "hours"),
        ("cron(15 3 ? * FUN *)", "day-of-week"),
        ("cron(15 3 ? 13 MON *)", "month"),
        ("cron(15 3 ? * MON)", "6 fields"),
        ("rate(5 minutes", "must look like cron"),
        ("cron(15 3 ? * MON 1800)", "year"),
    ],
)
def test_invalid_crons(expr: str, why: str) -> None:
    with pytest.raises(CronError, match=why):
        validate_cron(expr)


def test_a_special_session_on_a_weekend_adds_nothing_to_the_weekly_rule(tmp_path: Path) -> None:
    raw = base_config()
    raw["calendar"]["special_sessions"] = [{"date": "2026-11-08", "name": "Muhurat trading"}]  # a Sunday
    cfg = config.load(write_config(tmp_path / "stack.yml", raw), env={})
    # Its own one-time schedules start and stop the host (provision/sessions.py): no rule fires every Sunday.
    assert rule_weekdays(cfg) == ["MON", "TUE", "WED", "THU", "FRI"]
    expr, _ = utc_schedule(
        cfg.schedule.start, rule_weekdays(cfg), cfg.schedule.timezone, dt.date(2026, 11, 1)
    )
    assert expr == "cron(15 3 ? * MON-FRI *)"
