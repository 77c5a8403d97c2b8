"""The trading-day gate: calendar.json as provision builds it, judged in IST."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import holidays
import pytest
from fnhelpers import checked_config, write_calendar
from st_calendar import CalendarError, TradingCalendar

from provision.trading_calendar import build_calendar, exchange_days, sourced_years


@pytest.fixture(scope="module")
def cal(tmp_path_factory: pytest.TempPathFactory) -> TradingCalendar:
    return TradingCalendar.load(write_calendar(tmp_path_factory.mktemp("cal") / "calendar.json"))


def test_built_calendar_has_the_contract_shape() -> None:
    data = build_calendar(checked_config(["2026-12-31"], [{"date": "2026-11-08", "name": "Muhurat trading"}]),
                          [2026])
    assert set(data) == {"exchange", "timezone", "weekdays", "covered_years", "holidays", "special_sessions",
                         "weekly"}
    assert data["weekly"] == {"start": "08:45", "stop": "15:40"}  # the weekly rules' own times
    assert data["exchange"] == "XNSE"
    assert data["timezone"] == "Asia/Kolkata"
    assert data["weekdays"] == [0, 1, 2, 3, 4]
    assert data["covered_years"] == [2026]
    assert data["holidays"]["2026-01-26"] == "Republic Day"
    assert "2026-11-10" in data["holidays"]
    assert data["holidays"]["2026-12-31"] == "Extra holiday (stack config)"
    assert data["special_sessions"] == {"2026-11-08": {"name": "Muhurat trading"}}
    json.dumps(data)  # serialisable as is


def test_year_with_estimated_dates_is_not_covered_and_ships_no_guesses() -> None:
    # holidays 0.109 has NSE's confirmed list for 2026; 2027 is computed, with estimated dates.
    data = build_calendar(checked_config(["2027-01-01"]), [2026, 2027])
    assert data["covered_years"] == [2026]
    assert [d for d in data["holidays"] if d.startswith("2027")] == ["2027-01-01"]  # only the stack's own


def test_a_computed_year_without_estimates_is_not_covered_either() -> None:
    # holidays 0.109 computes 2028 from festival rules with no date marked estimated, but NSE has not
    # published it: shipping those dates would skip real trading days if a festival falls otherwise.
    data = build_calendar(checked_config(), [2026, 2027, 2028])
    assert data["covered_years"] == [2026]
    assert not [d for d in data["holidays"] if d >= "2027"]


def test_the_years_the_package_cites_nse_lists_for_are_read() -> None:
    # The rule above rests on the package citing NSE's circular per year; a package whose docstring no
    # longer reads so would fall back to the estimates alone, so a bump of holidays must fail here first.
    cited = sourced_years(holidays.financial_holidays("XNSE"))
    assert cited is not None and {2001, 2025, 2026} <= cited and 2027 not in cited


def test_an_exchange_with_fixed_rules_is_judged_by_the_estimates_alone() -> None:
    assert sourced_years(holidays.financial_holidays("XNYS")) is None
    assert exchange_days("XNYS", [2026, 2027])[1] == [2026, 2027]


@pytest.mark.parametrize(("day", "is_open", "reason", "name"), [
    ("2026-01-26", False, "holiday", "Republic Day"),  # Monday
    ("2026-11-10", False, "holiday", None),  # Tuesday, Diwali Balipratipada...
    ("2026-01-28", True, "trading-day", None),  # an ordinary Wednesday
    ("2026-01-31", False, "weekend", None),  # Saturday
    ("2026-02-01", False, "weekend", None),  # Sunday
    ("2026-11-07", True, "special-session", "Special live session"),  # Saturday session
    ("2026-11-08", True, "special-session", "Muhurat trading"),  # Sunday session
    ("2026-12-31", False, "holiday", "Extra holiday (stack config)"),  # from the stack config
    ("2027-01-27", True, "uncovered-year", None),  # Wednesday, 2027 list not confirmed
    ("2027-01-30", False, "weekend", None),  # uncovered year, but still a Saturday
])
def test_decisions_for_2026_dates(cal: TradingCalendar, day: str, is_open: bool, reason: str,
                                  name: str | None) -> None:
    decision = cal.decide(date.fromisoformat(day))
    assert (decision.open, decision.reason) == (is_open, reason)
    if name:
        assert decision.name == name
    assert (decision.warning is not None) == (reason == "uncovered-year")


def test_special_session_on_a_holiday_opens(tmp_path: Path) -> None:
    data = build_calendar(checked_config([], [{"date": "2026-11-10", "name": "Muhurat trading"}]), [2026])
    cal = TradingCalendar.from_dict(data)
    assert "2026-11-10" in data["holidays"]
    assert cal.decide(date(2026, 11, 10)).open
    assert not TradingCalendar.from_dict(dict(data, special_sessions={})).decide(date(2026, 11, 10)).open


def test_uncovered_year_warning_says_what_to_do(cal: TradingCalendar) -> None:
    warning = cal.decide(date(2027, 1, 27)).warning or ""
    assert "2027" in warning and "2026" in warning and "trading day" in warning


@pytest.mark.parametrize(("event_time", "local_day"), [
    ("2026-01-25T22:00:00Z", "2026-01-26"),  # late evening UTC is already the next day in IST
    ("2026-01-26T03:15:00Z", "2026-01-26"),  # 08:45 IST
    ("2026-01-30T19:00:00Z", "2026-01-31"),  # Friday UTC, Saturday 00:30 IST
    ("2026-01-27T18:29:00+00:00", "2026-01-27"),  # 23:59 IST
])
def test_local_date_is_the_exchange_date(cal: TradingCalendar, event_time: str, local_day: str) -> None:
    moment = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    assert cal.local_date(moment).isoformat() == local_day


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not valid JSON"),
    ('{"exchange": "XNSE"}', "no 'timezone'"),
    ('{"exchange": "XNSE", "timezone": "Asia/Kolkata", "weekdays": [7], "covered_years": [], "holidays": {},'
     ' "special_sessions": {}}', "weekdays"),
    ('{"exchange": "XNSE", "timezone": "Asia/Kolkata", "weekdays": [0], "covered_years": [], '
     '"holidays": {"26-01-2026": "x"}, "special_sessions": {}}', "26-01-2026"),
])
def test_malformed_calendar_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "calendar.json"
    path.write_text(content)
    with pytest.raises(CalendarError, match=message):
        TradingCalendar.load(path)


def test_missing_calendar_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="cannot read calendar"):
        TradingCalendar.load(tmp_path / "nope.json")
