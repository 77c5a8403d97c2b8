"""One trading-day rule: the start function's decision, `status`'s next start, `cost`'s count and the cron
weekdays agree on every date of this year and next (lambda/st_calendar.py is the one place it is written)."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import types
import zipfile
from zoneinfo import ZoneInfo

import pytest
import yaml
from provhelpers import ROOT

from provision import config, cost, export, lambda_package, rules, status

IST = ZoneInfo("Asia/Kolkata")
EVENING = ("17:45", "19:30")


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    raw = yaml.safe_load((ROOT / "stack.yml").read_text())
    year = dt.date.today().year
    raw["calendar"]["extra_holidays"] = [f"{year}-12-31", f"{year + 1}-06-15"]
    raw["calendar"]["special_sessions"] = [
        {"date": _first(year, 5), "name": "A Saturday session"},
        {"date": _first(year + 1, 6), "name": "A Sunday session"},
        # A weekday evening: the functions' start and status's next start are at its own hours.
        {"date": _first(year, 2), "name": "An evening session", "start": EVENING[0], "stop": EVENING[1]},
    ]
    return config.validate(raw, ROOT / "stack.yml", env={})


def _first(year: int, weekday: int) -> str:
    day = dt.date(year, 11, 1)
    while day.weekday() != weekday:
        day += dt.timedelta(days=1)
    return day.isoformat()


@pytest.fixture(scope="module")
def lambda_decisions(cfg: config.Config) -> dict[dt.date, bool]:
    """What the deployed start function decides: its zip's own st_calendar.py on its own calendar.json."""
    package = zipfile.ZipFile(io.BytesIO(lambda_package.build(cfg).data))
    module = types.ModuleType("st_calendar_from_zip")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(package.read("st_calendar.py"), "st_calendar.py", "exec"), module.__dict__)  # noqa: S102
    calendar = module.TradingCalendar.from_dict(json.loads(package.read("calendar.json")))
    year = dt.date.today().year
    return {d.day: d.open for d in calendar.days(dt.date(year, 1, 1), dt.date(year + 1, 12, 31))}


def test_provision_runs_the_file_the_zip_carries(cfg: config.Config) -> None:
    package = zipfile.ZipFile(io.BytesIO(lambda_package.build(cfg).data))
    assert package.read("st_calendar.py") == (ROOT / "lambda" / "st_calendar.py").read_bytes()
    assert rules.TradingCalendar.__module__ == "st_calendar"
    assert rules._rule.__file__ == str(ROOT / "lambda" / "st_calendar.py")


def test_status_next_start_is_the_functions_next_trading_day(cfg: config.Config,
                                                            lambda_decisions: dict[dt.date, bool]) -> None:
    calendar = rules.calendar(cfg)
    days = sorted(lambda_decisions)
    open_days = [d for d in days if lambda_decisions[d]]
    for day in days:
        if day > open_days[-1]:
            break
        midnight = dt.datetime.combine(day, dt.time(0, 0), IST)
        start, _ = status.next_run(calendar, cfg.schedule.start, midnight, "start")
        assert start.date() == next(d for d in open_days if d >= day), day
        evening = start.date().isoformat() == _first(dt.date.today().year, 2)
        assert start.strftime("%H:%M") == (EVENING[0] if evening else cfg.schedule.start), day


def test_cost_counts_the_functions_trading_days(cfg: config.Config, lambda_decisions: dict[dt.date, bool]) -> None:
    for year in {d.year for d in lambda_decisions}:
        counted = cost.schedule_days(cfg, year)
        assert counted["trading_days"] == sum(o for d, o in lambda_decisions.items() if d.year == year), year
        for month in counted["months"]:
            expected = sum(o for d, o in lambda_decisions.items() if (d.year, d.month) == (year, month["month"]))
            assert month["trading_days"] == expected, (year, month)


def test_cron_runs_on_every_day_the_function_trades(cfg: config.Config,
                                                     lambda_decisions: dict[dt.date, bool]) -> None:
    derived = export.export(cfg)["derived"]
    weekly = {int(d) for d in derived["cron_weekdays"].split(",")}  # crontab: 0 = Sunday
    dated = {s["date"] for s in derived["session_jobs"] if s["jobs"]}
    for day, is_open in lambda_decisions.items():
        if is_open:  # the jobs run on every trading day: by the weekly entries, or by the session's dated ones
            assert (day.weekday() + 1) % 7 in weekly or day.isoformat() in dated, day
    assert all(lambda_decisions[dt.date.fromisoformat(d)] for d in dated)  # and a dated entry only on one
    assert {6, 0} & weekly == set()  # the weekend sessions add no weekly entry
