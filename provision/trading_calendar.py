"""Build the trading calendar shipped as ``calendar.json`` in the start function's zip.

Pure: no AWS call, no file I/O. The format is in docs/CONTRACTS.md::

    {"exchange": "XNSE", "timezone": "Asia/Kolkata", "weekdays": [0,1,2,3,4],
     "covered_years": [2026],
     "holidays": {"2026-01-26": "Republic Day", ...},
     "special_sessions": {"2026-11-08": "Muhurat trading"}}

Holidays come from ``holidays.financial_holidays(exchange)``, a maintained
source, plus the stack's ``extra_holidays``. A year is *covered* only when the
package has the exchange's confirmed list for it. The package computes any
year from rules (festival dates from the Hindu and Islamic calendars, for
NSE), so a computed year looks complete; what tells a confirmed one is that
the package cites the exchange's own published list for it (the "Historical
data" years of the exchange's class, one circular per year for NSE), and
that none of its dates is an estimate ("... (estimated)"). An exchange whose
class cites no yearly list (one whose holidays follow fixed rules) is judged
by the estimates alone. A year that is not covered is left out of
``covered_years`` and none of its package dates are shipped, so the start
function treats its weekdays as trading days and warns, rather than skipping
a real trading day on a guessed holiday. Extra holidays and special sessions
from the config are always shipped.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Any

import holidays

from provision.rules import WEEKDAYS

if TYPE_CHECKING:
    from provision.config import Config

ESTIMATED_MARK = "(estimated)"


def exchange_days(exchange: str, years: list[int]) -> tuple[dict[date, str], list[int]]:
    """The package's holidays of ``exchange`` in the years it has a confirmed list for, and those years."""
    source = holidays.financial_holidays(exchange, years=sorted(set(years)))
    by_year: dict[int, dict[date, str]] = {y: {} for y in years}
    for day, name in source.items():
        if day.year in by_year:
            by_year[day.year][day] = str(name)
    start_year = int(getattr(source, "start_year", 0) or 0)
    cited = sourced_years(source)
    covered = sorted(
        y for y, days in by_year.items()
        if y >= start_year and days and not any(ESTIMATED_MARK in n for n in days.values())
        and (cited is None or y in cited)
    )
    return {d: n for y in covered for d, n in by_year[y].items()}, covered


def sourced_years(source: object) -> set[int] | None:
    """The years the package cites the exchange's own published list for: the ``* [YYYY](<link>)`` lines
    of its exchange class's docstring ("Historical data"). None when the class cites no such year."""
    for cls in type(source).__mro__:
        years = {int(y) for y in re.findall(r"^\s*\*\s*\[(\d{4})\]\(", cls.__dict__.get("__doc__") or "", re.M)}
        if years:
            return years
    return None


def build_calendar(cfg: Config, years: list[int]) -> dict[str, Any]:
    """The calendar.json dict of a checked config for ``years`` (usually this year and next)."""
    found, covered = exchange_days(cfg.calendar.exchange, years)
    for raw in cfg.calendar.extra_holidays:
        day = date.fromisoformat(raw)
        names = [found.get(day), "Extra holiday (stack config)"]
        found[day] = "; ".join(n for n in names if n)
    # A session's own hours go with it: the start and stop functions skip the weekly firings of that day.
    sessions = {s.date: {"name": s.name, **{k: getattr(s, k) for k in ("start", "stop") if getattr(s, k)}}
                for s in cfg.calendar.special_sessions}
    return {
        "exchange": cfg.calendar.exchange,
        "timezone": cfg.schedule.timezone,
        "weekdays": sorted(WEEKDAYS.index(d) for d in cfg.schedule.weekdays),
        "covered_years": covered,
        "holidays": {d.isoformat(): found[d] for d in sorted(found)},
        "special_sessions": dict(sorted(sessions.items())),
        # The weekly rules' own times: a firing stands for these, whatever second its event carries.
        "weekly": {"start": cfg.schedule.start, "stop": cfg.schedule.stop},
    }
