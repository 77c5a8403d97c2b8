"""The trading-day rule: which exchange-local dates trade, which are skipped, and why.

The one place the rule is written. The start function's calendar gate runs
it from its zip; ``provision`` imports this same file (``provision/rules.py``)
for ``status`` (the next start and stop), ``cost`` (trading days in a year)
and the config export (the weekdays the host's cron jobs run on).

Reads ``calendar.json`` (docs/CONTRACTS.md), which ``provision`` computes at
deploy time and ships at the root of the function's zip. Order of the rules:

1. a special session (Muhurat trading, a Budget-day Saturday) is open, even
   on a weekend or a holiday;
2. a day that is not one of ``weekdays`` is closed (weekend);
3. a listed holiday is closed (exchange holidays and the stack's extra ones);
4. a date in a year outside ``covered_years`` is open, with a warning: the
   exchange's list for that year was not known at deploy time, and a missed
   trading day costs more than an idle hour;
5. otherwise open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Weekdays as the stack config writes them; index = date.weekday().
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


class CalendarError(ValueError):
    """calendar.json is missing or malformed."""


@dataclass(frozen=True)
class Decision:
    day: date
    open: bool
    reason: str  # trading-day | special-session | weekend | holiday | uncovered-year
    name: str | None = None
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "open": self.open, "reason": self.reason, "name": self.name}

    def describe(self) -> str:
        weekday = WEEKDAY_NAMES[self.day.weekday()]
        text = {
            "trading-day": "a trading day",
            "special-session": f"a special session ({self.name})",
            "weekend": "not a trading weekday",
            "holiday": f"an exchange holiday ({self.name})",
            "uncovered-year": "outside the calendar's years; treated as a trading day",
        }[self.reason]
        return f"{self.day.isoformat()} ({weekday}) is {text}"


def _date(value: Any, where: str) -> date:
    if not isinstance(value, str):
        raise CalendarError(f"calendar {where}: {value!r} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CalendarError(f"calendar {where}: {value!r} is not a YYYY-MM-DD date") from None


def _named_dates(raw: Any, where: str) -> dict[date, str]:
    if not isinstance(raw, dict):
        raise CalendarError(f"calendar {where} must be an object of date -> name")
    return {_date(k, f"{where} key"): str(v["name"] if isinstance(v, dict) else v) for k, v in raw.items()}


def _weekly(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or set(raw) - {"start", "stop"} or not all(
            isinstance(v, str) and len(v) == 5 and v[2] == ":" and v.replace(":", "").isdigit()
            for v in raw.values()):
        raise CalendarError(f'calendar weekly must be like {{"start": "08:45", "stop": "15:40"}}, got {raw!r}')
    return {str(k): str(v) for k, v in raw.items()}


def _session_hours(raw: Any) -> dict[date, tuple[str, str]]:
    """The special sessions that have hours of their own: date -> (start, stop), exchange-local HH:MM."""
    hours = {}
    for k, v in raw.items():
        if isinstance(v, dict) and (v.get("start") or v.get("stop")):
            hours[_date(k, "special_sessions key")] = (str(v.get("start") or ""), str(v.get("stop") or ""))
    return hours


#: How long before the calendar's last covered day the start function starts saying so.
COVERAGE_WARNING_DAYS = 45


@dataclass(frozen=True)
class TradingCalendar:
    exchange: str
    timezone: str
    weekdays: frozenset[int]
    covered_years: frozenset[int]
    holidays: dict[date, str]
    special_sessions: dict[date, str]
    # Special sessions with hours of their own (a one-time schedule starts and stops the host then).
    session_hours: dict[date, tuple[str, str]] = field(default_factory=dict)
    # The weekly rules' exchange-local times ("start", "stop"): what a weekly firing stands for, whatever
    # second of the next minute EventBridge's event carries. Empty in a calendar built before them.
    weekly: dict[str, str] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_dict(cls, data: Any) -> TradingCalendar:
        if not isinstance(data, dict):
            raise CalendarError("calendar must be a JSON object")
        for key in ("exchange", "timezone", "weekdays", "covered_years", "holidays", "special_sessions"):
            if key not in data:
                raise CalendarError(f"calendar has no {key!r}")
        weekdays = data["weekdays"]
        if (not isinstance(weekdays, list) or not weekdays
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in weekdays)):
            raise CalendarError(
                f"calendar weekdays must be a non-empty list of 0 (Mon) .. 6 (Sun), got {weekdays!r}")
        years = data["covered_years"]
        if (not isinstance(years, list)
                or not all(isinstance(y, int) and not isinstance(y, bool) for y in years)):
            raise CalendarError(f"calendar covered_years must be a list of years, got {years!r}")
        timezone = data["timezone"]
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"calendar timezone {timezone!r} is not an IANA time zone") from None
        return cls(
            exchange=str(data["exchange"]),
            timezone=str(timezone),
            weekdays=frozenset(weekdays),
            covered_years=frozenset(years),
            holidays=_named_dates(data["holidays"], "holidays"),
            special_sessions=_named_dates(data["special_sessions"], "special_sessions"),
            session_hours=_session_hours(data["special_sessions"]),
            weekly=_weekly(data.get("weekly", {})),
        )

    @classmethod
    def load(cls, path: Path) -> TradingCalendar:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CalendarError(f"cannot read calendar {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalendarError(f"calendar {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def local_date(self, moment: datetime) -> date:
        """The exchange-local date of an aware instant."""
        if moment.tzinfo is None:
            raise ValueError("a naive datetime has no defined exchange-local date")
        return moment.astimezone(self.zone).date()

    def decide(self, day: date) -> Decision:
        if day in self.special_sessions:
            return Decision(day, True, "special-session", self.special_sessions[day])
        if day.weekday() not in self.weekdays:
            return Decision(day, False, "weekend")
        if day in self.holidays:
            return Decision(day, False, "holiday", self.holidays[day])
        if day.year not in self.covered_years:
            covered = ", ".join(str(y) for y in sorted(self.covered_years)) or "none"
            return Decision(
                day, True, "uncovered-year",
                warning=(f"the {self.exchange} holiday calendar does not cover {day.year} "
                         f"(covers {covered}); treating {day.isoformat()} as a trading day. "
                         "Redeploy with a newer calendar."),
            )
        return Decision(day, True, "trading-day")

    def days(self, first: date, last: date) -> Iterator[Decision]:
        """The decision for every date from ``first`` to ``last``, both included."""
        day = first
        while day <= last:
            yield self.decide(day)
            day += timedelta(days=1)

    def next_open(self, first: date, within_days: int = 400) -> tuple[Decision, list[Decision]]:
        """The first trading day from ``first`` on, and the holidays passed over before it."""
        skipped: list[Decision] = []
        for decision in self.days(first, first + timedelta(days=within_days)):
            if decision.open:
                return decision, skipped
            if decision.reason == "holiday":
                skipped.append(decision)
        raise CalendarError(f"no trading day in the {within_days} days from {first.isoformat()}")

    def own_hours(self, day: date, kind: str) -> str | None:
        """A special session's own start or stop time that day (``kind``: start | stop), if it has one."""
        start, stop = self.session_hours.get(day, ("", ""))
        return (start if kind == "start" else stop) or None

    def weekly_firing_skipped(self, day: date, local_time: str, kind: str) -> str | None:
        """Why the weekly rule's firing at ``local_time`` on ``day`` does nothing, if it does nothing:
        the day is a special session that starts (or stops) at another time, by its own schedule."""
        own = self.own_hours(day, kind)
        local_time = self.weekly.get(kind) or local_time
        if own is None or own == local_time:
            return None
        return (f"{day.isoformat()} is a special session ({self.special_sessions.get(day)}) that {kind}s at {own} "
                f"by its own schedule; the weekly {local_time} {kind} does nothing")

    def covered_until(self) -> date | None:
        """The last day the calendar's holiday lists cover (31 December of its last covered year)."""
        return date(max(self.covered_years), 12, 31) if self.covered_years else None

    def coverage_warning(self, today: date) -> str | None:
        """A line for every start notification once fewer than COVERAGE_WARNING_DAYS are left."""
        until = self.covered_until()
        left = (until - today).days if until else -1
        if left >= COVERAGE_WARNING_DAYS:
            return None
        where = f"covers up to {until.isoformat()} ({left} days left)" if until and left >= 0 else "has run out"
        return (f"the {self.exchange} trading calendar {where}: refresh it with `python -m provision up` (with a "
                "holidays package that has next year's list: `pip install -U holidays`, or list the days in "
                "calendar.extra_holidays)")
