"""The trading-day rule, as the start function runs it: ``lambda/st_calendar.py`` itself.

``provision`` imports that one file (it is in the functions' zip too) rather
than a copy, so ``status``, ``cost`` and the config export decide every date
exactly as the start function's calendar gate does. :func:`calendar` builds
the rule's :class:`TradingCalendar` from a checked config.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

_FILE = Path(__file__).resolve().parent.parent / "lambda" / "st_calendar.py"


def _load() -> Any:
    # The name the functions import it by, so that provision.operate (which puts lambda/ on
    # sys.path to run the functions' code) finds this very module rather than a second copy.
    if "st_calendar" in sys.modules:
        return sys.modules["st_calendar"]
    spec = importlib.util.spec_from_file_location("st_calendar", _FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["st_calendar"] = module
    spec.loader.exec_module(module)
    return module


_rule = _load()
WEEKDAYS: tuple[str, ...] = _rule.WEEKDAYS
CalendarError: type[Exception] = _rule.CalendarError

if TYPE_CHECKING:
    from provision.config import Config

TradingCalendar = _rule.TradingCalendar
Decision = _rule.Decision


def calendar(cfg: Config, years: list[int] | None = None, builder: Any = None,
             today: dt.date | None = None) -> Any:
    """The rule's TradingCalendar for ``cfg`` (default: this year and next, as ``up`` deploys it)."""
    from provision import lambda_package

    return TradingCalendar.from_dict(lambda_package.calendar_for(cfg, builder, today, years=years))
