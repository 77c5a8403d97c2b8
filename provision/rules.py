"""The trading-day rule, as the start function runs it: ``lambda/st_calendar.py`` itself.

``provision`` imports that one file (it is in the functions' zip too) rather
than a copy, so ``status``, ``cost`` and the config export decide every date
exactly as the start function's calendar gate does. :func:`calendar` builds
the rule's :class:`TradingCalendar` from a checked config. The token check's
modes come the same way from the functions' settings (``lambda/st_settings.py``),
so ``host.token_check`` accepts exactly what the start function does.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

_LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"


def _load(name: str) -> Any:
    # The name the functions import it by, so that provision.operate (which puts lambda/ on
    # sys.path to run the functions' code) finds this very module rather than a second copy.
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _LAMBDA_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_rule = _load("st_calendar")
WEEKDAYS: tuple[str, ...] = _rule.WEEKDAYS
#: host.token_check: what the trading job does with a token published before token_fresh_after.
TOKEN_CHECKS: tuple[str, ...] = _load("st_settings").TOKEN_CHECKS
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
