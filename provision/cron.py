"""Exchange-local schedule -> EventBridge UTC cron, and our own cron validation.

EventBridge evaluates ``cron(...)`` in UTC. A start time in a zone east of
UTC can fall on the previous UTC day (04:00 Asia/Kolkata is 22:30 UTC the day
before), so the weekdays shift with it. Zones whose offset changes (daylight
saving time) are refused: a fixed UTC rule would be an hour off for half the
year. The emulator accepts any string as a schedule, so :func:`validate_cron`
checks the expression the way EventBridge documents it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from provision.errors import ProvisionError
from provision.rules import WEEKDAYS

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# EventBridge numbers days of the week 1-7 from Sunday.
_DOW_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class CronError(ProvisionError):
    pass


def utc_offsets(zone: str, years: list[int]) -> set[dt.timedelta]:
    """Every UTC offset ``zone`` uses in ``years`` (sampled daily at 00:00 and 12:00 local)."""
    tz = ZoneInfo(zone)
    offsets: set[dt.timedelta] = set()
    for year in years:
        day = dt.date(year, 1, 1)
        while day.year == year:
            for hour in (0, 12):
                off = dt.datetime(day.year, day.month, day.day, hour, tzinfo=tz).utcoffset()
                if off is not None:
                    offsets.add(off)
            day += dt.timedelta(days=1)
    return offsets


def fixed_offset(zone: str, today: dt.date | None = None) -> dt.timedelta | None:
    """The zone's one UTC offset this year and next, or ``None`` if it changes (DST)."""
    year = (today or dt.date.today()).year
    offsets = utc_offsets(zone, [year, year + 1])
    return next(iter(offsets)) if len(offsets) == 1 else None


def _check_value(token: str, lo: int, hi: int, names: tuple[str, ...], name_base: int) -> bool:
    if token.isdigit():
        return lo <= int(token) <= hi
    if token.upper() in names:
        return True
    return False


def _check_field(
    field: str,
    lo: int,
    hi: int,
    names: tuple[str, ...] = (),
    name_base: int = 1,
    question: bool = False,
    extras: Iterable[str] = (),
) -> bool:
    if field == "?":
        return question
    if field == "*":
        return True
    for part in field.split(","):
        if not part:
            return False
        if any(re.fullmatch(x, part) for x in extras):
            continue
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            return False
        if base == "*" and step:
            continue
        lo_s, dash, hi_s = base.partition("-")
        if not _check_value(lo_s, lo, hi, names, name_base):
            return False
        if dash and not _check_value(hi_s, lo, hi, names, name_base):
            return False
    return True


def validate_cron(expression: str) -> None:
    """Raise :class:`CronError` unless ``expression`` is a valid EventBridge ``cron(...)``."""
    m = re.fullmatch(r"cron\((.*)\)", expression.strip())
    if not m:
        raise CronError(
            f"{expression!r}: a schedule must look like cron(min hour day-of-month month day-of-week year)"
        )
    fields = m.group(1).split()
    if len(fields) != 6:
        raise CronError(f"{expression!r}: EventBridge cron needs 6 fields, got {len(fields)}")
    minute, hour, dom, month, dow, year = fields
    checks = [
        ("minutes", _check_field(minute, 0, 59)),
        ("hours", _check_field(hour, 0, 23)),
        ("day-of-month", _check_field(dom, 1, 31, question=True, extras=(r"L", r"\d{1,2}W", r"LW"))),
        ("month", _check_field(month, 1, 12, _MONTHS)),
        (
            "day-of-week",
            _check_field(
                dow,
                1,
                7,
                _DOW_NAMES,
                question=True,
                extras=(r"L", r"[1-7]L", r"[1-7]#[1-5]", r"[A-Z]{3}#[1-5]"),
            ),
        ),
        ("year", _check_field(year, 1970, 2199)),
    ]
    for name, ok in checks:
        if not ok:
            raise CronError(f"{expression!r}: the {name} field is not valid")
    if (dom == "?") == (dow == "?"):
        raise CronError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")


def _dow_field(days: list[str]) -> str:
    """Compact weekday list in EventBridge's order (SUN=1 .. SAT=7); runs of 3+ become ranges (MON-FRI)."""
    idx = sorted(_DOW_NAMES.index(d) for d in set(days))
    runs: list[list[int]] = []
    for i in idx:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_DOW_NAMES[run[0]]}-{_DOW_NAMES[run[-1]]}")
        else:
            parts.extend(_DOW_NAMES[i] for i in run)
    return ",".join(parts)


def utc_schedule(
    local_time: str, weekdays: Iterable[str], zone: str, today: dt.date | None = None
) -> tuple[str, list[str]]:
    """``(cron expression, UTC weekdays)`` for a daily exchange-local time on ``weekdays``.

    Raises :class:`CronError` for a zone with daylight saving time.
    """
    offset = fixed_offset(zone, today)
    if offset is None:
        raise CronError(
            f"time zone {zone} changes its UTC offset (daylight saving time); EventBridge rules "
            "are UTC, so the schedule would drift. Use a fixed-offset zone such as Asia/Kolkata"
        )
    h, m = (int(x) for x in local_time.split(":"))
    total = h * 60 + m - int(offset.total_seconds() // 60)
    day_shift, minutes = divmod(total, 24 * 60)
    utc_days = [WEEKDAYS[(WEEKDAYS.index(d) + day_shift) % 7] for d in weekdays]
    expr = f"cron({minutes % 60} {minutes // 60} ? * {_dow_field(utc_days)} *)"
    validate_cron(expr)
    return expr, sorted(set(utc_days), key=WEEKDAYS.index)
