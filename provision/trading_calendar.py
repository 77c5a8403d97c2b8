"""Build the trading calendar shipped as ``calendar.json`` in the start function's zip.

Pure: no AWS call, no file I/O. The format is in docs/CONTRACTS.md::

    {"exchange": "XNSE", "timezone": "Asia/Kolkata", "weekdays": [0,1,2,3,4],
     "covered_years": [2026],
     "holidays": {"2026-01-26": "Republic Day", ...},
     "special_sessions": {"2026-11-08": "Muhurat trading"}}

Holidays come from ``holidays.financial_holidays(exchange)``, a maintained
source, plus the stack's ``extra_holidays``. A year is *covered* only when the
package has the exchange's confirmed list for it: the package can compute any
year from rules, but for a year whose list is not out yet some dates are
estimates (shown as "... (estimated)"). Such a year is left out of
``covered_years`` and none of its package dates are shipped, so the start
function treats its weekdays as trading days and warns, rather than skipping
a real trading day on a guessed holiday. Extra holidays and special sessions
from the config are always shipped.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
ESTIMATED_MARK = "(estimated)"


class CalendarConfigError(ValueError):
    """The calendar part of the stack config is invalid."""


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise CalendarConfigError(f"{where}: {value!r} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CalendarConfigError(f"{where}: {value!r} is not a date YYYY-MM-DD") from None


def _weekday_numbers(weekdays: list[str]) -> list[int]:
    if not weekdays:
        raise CalendarConfigError("schedule.weekdays: at least one weekday is needed")
    numbers = []
    for i, name in enumerate(weekdays):
        key = str(name).strip().upper()[:3]
        if key not in WEEKDAYS or len(str(name).strip()) < 3:
            raise CalendarConfigError(
                f"schedule.weekdays[{i}]: {name!r} is not a weekday ({', '.join(WEEKDAYS)})")
        numbers.append(WEEKDAYS.index(key))
    return sorted(set(numbers))


def build_calendar(exchange: str, timezone: str, weekdays: list[str], extra_holidays: list[str],
                   special_sessions: list[dict[str, Any]], years: list[int]) -> dict[str, Any]:
    """The calendar.json dict for ``years`` (usually this year and next)."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarConfigError(f"schedule.timezone: {timezone!r} is not an IANA time zone") from None
    if not years or not all(isinstance(y, int) and not isinstance(y, bool) for y in years):
        raise CalendarConfigError(f"years must be a non-empty list of years, got {years!r}")
    day_numbers = _weekday_numbers(weekdays)

    try:
        source = holidays.financial_holidays(exchange, years=sorted(set(years)))
    except NotImplementedError:
        known = ", ".join(sorted(holidays.list_supported_financial()))
        raise CalendarConfigError(
            f"calendar.exchange: {exchange!r} is not a market the holidays package knows ({known})") from None

    by_year: dict[int, dict[date, str]] = {y: {} for y in years}
    for day, name in source.items():
        if day.year in by_year:
            by_year[day.year][day] = str(name)
    start_year = int(getattr(source, "start_year", 0) or 0)
    covered = sorted(
        y for y, days in by_year.items()
        if y >= start_year and days and not any(ESTIMATED_MARK in n for n in days.values())
    )

    result_holidays: dict[date, str] = {}
    for y in covered:
        result_holidays.update(by_year[y])
    for i, raw in enumerate(extra_holidays or []):
        day = _parse_date(raw, f"calendar.extra_holidays[{i}]")
        names = [result_holidays.get(day), "Extra holiday (stack config)"]
        result_holidays[day] = "; ".join(n for n in names if n)

    sessions: dict[date, str] = {}
    for i, item in enumerate(special_sessions or []):
        where = f"calendar.special_sessions[{i}]"
        if not isinstance(item, dict) or "date" not in item:
            raise CalendarConfigError(f"{where}: expected {{date: YYYY-MM-DD, name: ...}}, got {item!r}")
        unknown = set(item) - {"date", "name"}
        if unknown:
            raise CalendarConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        day = _parse_date(item["date"], f"{where}.date")
        name = str(item.get("name") or "Special session")
        if day in sessions:
            raise CalendarConfigError(f"{where}: {day.isoformat()} is listed twice")
        sessions[day] = name

    return {
        "exchange": exchange,
        "timezone": timezone,
        "weekdays": day_numbers,
        "covered_years": covered,
        "holidays": {d.isoformat(): result_holidays[d] for d in sorted(result_holidays)},
        "special_sessions": {d.isoformat(): sessions[d] for d in sorted(sessions)},
    }
