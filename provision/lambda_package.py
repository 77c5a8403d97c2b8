"""The one deterministic zip both Lambdas run (handlers ``start.handler`` and ``stop.handler``).

Contents: every ``.py`` file under ``lambda/`` (no tests, no ``__pycache__``),
``calendar.json`` computed by :func:`provision.trading_calendar.build_calendar`
for the current and the next year, and the stack's zone from the installed
``tzdata`` package (requirements.txt pins it): Python's ``zoneinfo`` falls back to it when the
runtime image has no time zone database, which the emulator cannot show and
without which every invocation would fail on its first line. Entries are sorted, with a fixed timestamp
and fixed permissions, so the same sources give the same bytes, the same
sha256, and Lambda is not updated.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.config import Config
from provision.errors import ProvisionError
from provision.zips import deterministic_zip

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"
CalendarBuilder = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Package:
    data: bytes

    @property
    def sha256_b64(self) -> str:
        """The hash the Lambda API reports as ``CodeSha256``."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()


def _is_source(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    parts = rel.parts
    if any(p in ("__pycache__", "tests", "test") or p.startswith(".") for p in parts[:-1]):
        return False
    name = parts[-1]
    return (
        name.endswith(".py")
        and not name.startswith("test_")
        and not name.endswith("_test.py")
        and name != "conftest.py"
    )


def tzdata_entries(zone: str) -> list[tuple[str, bytes]]:
    """The part of the installed ``tzdata`` package that reads ``zone``, as ``(path in the zip, bytes)``.

    zoneinfo's fallback imports ``tzdata.zoneinfo.<Area>`` and opens the zone's
    file in it, so the zone's file and the ``__init__.py`` of each package on
    its way are enough, with a ``zones`` list naming it. The functions read no
    other zone; the whole package would make every package build 25 times
    slower and the zip 14 times larger. Read from the package's own directory,
    not from its install record, which some installs lack.
    """
    spec = importlib.util.find_spec("tzdata")
    if spec is None or not spec.submodule_search_locations:
        raise ProvisionError("the tzdata package is not installed, and the Lambdas carry it (their runtime may "
                             "have no time zone database); run `pip install -r requirements.txt` (or `make setup`)")
    root = Path(list(spec.submodule_search_locations)[0])
    parts = zone.split("/")
    packages = [root.joinpath("zoneinfo", *parts[:depth]) for depth in range(len(parts))]
    wanted = [root / "__init__.py"] + [d / "__init__.py" for d in packages] + [root.joinpath("zoneinfo", *parts)]
    missing = [str(path) for path in wanted if not path.is_file()]
    if missing:
        raise ProvisionError(f"the tzdata package at {root} lacks {', '.join(missing)}; reinstall it with "
                             "`pip install --force-reinstall -r requirements.txt`")
    entries = [(path.relative_to(root.parent).as_posix(), path.read_bytes()) for path in wanted]
    return entries + [("tzdata/zones", (zone + "\n").encode())]


def default_calendar_builder() -> CalendarBuilder:
    try:
        from provision.trading_calendar import build_calendar
    except ImportError as exc:
        raise ProvisionError(f"cannot build calendar.json for the Lambdas: {exc}") from None
    return build_calendar


def calendar_for(
    cfg: Config, builder: CalendarBuilder | None = None, today: dt.date | None = None,
    years: list[int] | None = None,
) -> dict[str, Any]:
    """calendar.json of the checked config ``cfg``, for ``years`` (default: this year and next)."""
    year = (today or dt.date.today()).year
    build = builder or default_calendar_builder()
    return build(cfg, years=years or [year, year + 1])


def build(
    cfg: Config,
    lambda_dir: Path = LAMBDA_DIR,
    builder: CalendarBuilder | None = None,
    today: dt.date | None = None,
) -> Package:
    if not (lambda_dir / "start.py").is_file() or not (lambda_dir / "stop.py").is_file():
        raise ProvisionError(f"{lambda_dir} must hold start.py and stop.py (the Lambda handlers)")
    files = sorted(
        (p for p in lambda_dir.rglob("*.py") if p.is_file() and _is_source(p, lambda_dir)),
        key=lambda p: p.relative_to(lambda_dir).as_posix(),
    )
    entries: list[tuple[str, bytes]] = [(p.relative_to(lambda_dir).as_posix(), p.read_bytes()) for p in files]
    calendar = calendar_for(cfg, builder, today)
    entries.append(("calendar.json", (json.dumps(calendar, sort_keys=True, indent=1) + "\n").encode()))
    entries += tzdata_entries(cfg.schedule.timezone)
    entries.sort()
    return Package(deterministic_zip(entries))
