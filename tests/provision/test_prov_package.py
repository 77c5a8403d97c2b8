"""The Lambda zip is deterministic and holds exactly the handler sources, calendar.json and the stack's zone."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from provhelpers import ROOT

from provision import config, lambda_package


def cfg() -> config.Config:
    return config.load(ROOT / "stack.yml", env={})


def copy_lambda(tmp_path: Path) -> Path:
    dest = tmp_path / "lambda"
    shutil.copytree(ROOT / "lambda", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_same_sources_same_bytes(tmp_path: Path) -> None:
    src = copy_lambda(tmp_path)
    a = lambda_package.build(cfg(), src).data
    (src / "start.py").touch()  # a new mtime is not a change
    (src / "stop.py").chmod(0o600)  # nor are local permissions
    b = lambda_package.build(cfg(), src).data
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    with (src / "stop.py").open("a") as fh:
        fh.write("\n")
    assert lambda_package.build(cfg(), src).data != a


def test_contents_and_metadata(tmp_path: Path) -> None:
    src = copy_lambda(tmp_path)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "start.cpython-311.pyc").write_bytes(b"x")
    (src / "tests").mkdir()
    (src / "tests" / "test_start.py").write_text("")
    (src / "test_stop.py").write_text("")
    (src / "notes.txt").write_text("")
    pkg = lambda_package.build(cfg(), src)
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        expected = sorted(
            [p.name for p in (ROOT / "lambda").glob("*.py") if not p.name.startswith("test_")]
            + ["calendar.json"]
        )
        assert [n for n in names if not n.startswith("tzdata/")] == expected
        assert "tzdata/zoneinfo/Asia/Kolkata" in names and not any(n.endswith(".pyc") for n in names)
        assert {"start.py", "stop.py", "calendar.json"} <= set(names)
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert (info.external_attr >> 16) & 0o777 == 0o644
        calendar = json.loads(zf.read("calendar.json"))
    assert calendar["exchange"] == "XNSE" and calendar["timezone"] == "Asia/Kolkata"
    assert calendar["weekdays"] == [0, 1, 2, 3, 4]
    assert "holidays" in calendar and "special_sessions" in calendar


def test_calendar_covers_this_year_and_next(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def builder(checked: Any, years: list[int]) -> dict[str, Any]:
        seen.update(cfg=checked, years=years)
        return {
            "exchange": checked.calendar.exchange,
            "covered_years": years,
            "holidays": {},
            "special_sessions": {},
            "timezone": checked.schedule.timezone,
            "weekdays": [0],
        }

    config = cfg()
    lambda_package.build(config, copy_lambda(tmp_path), builder, today=dt.date(2026, 11, 27))
    assert seen["years"] == [2026, 2027]
    assert seen["cfg"] is config  # the checked config, handed over once


def test_the_functions_resolve_their_zone_on_a_runtime_without_a_time_zone_database(tmp_path: Path) -> None:
    """Python's zoneinfo looks in the system's database first, then in the tzdata package: the package carries
    it, so a runtime image without /usr/share/zoneinfo still reads the stack's zone."""
    pkg = lambda_package.build(cfg(), copy_lambda(tmp_path))
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as zf:
        zf.extractall(unpacked)
    probe = ("import st_calendar, st_settings, zoneinfo\n"
             "assert not zoneinfo.TZPATH, zoneinfo.TZPATH\n"
             "s = st_settings.load_settings({'ST_INSTANCE_ID': 'i-0123456789abcdef0', 'ST_BUCKET': 'b',\n"
             "    'ST_TOPIC_ARN': 'arn:aws:sns:ap-south-1:123456789012:t', 'ST_TIMEZONE': 'Asia/Kolkata',\n"
             "    'ST_TOKEN_FRESH_AFTER': '07:30', 'ST_SYNC_DOCUMENT': 'st-sync', 'ST_EOD_DOCUMENT': 'st-eod',\n"
             "    'ST_TOKEN_KEY': 'secrets/access_token.txt', 'ST_MANIFEST_KEY': 'deploy/manifest.json'})\n"
             "print(st_calendar.TradingCalendar.load(s.calendar_file).zone.key)\n")
    # No system database (an empty PYTHONTZPATH) and no site-packages (-S): only what the package holds.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONTZPATH": "", "PYTHONPATH": str(unpacked)}
    run = subprocess.run([sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "Asia/Kolkata", run.stderr
    shutil.rmtree(unpacked / "tzdata")  # without the package's tzdata: the settings say what is missing
    run = subprocess.run([sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True)
    assert run.returncode != 0 and "has no time zone database" in run.stderr


def test_tzdata_is_read_from_its_package_even_without_an_install_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some installs (a distribution's package, --target) leave no RECORD or no dist-info at all."""
    import importlib.util

    spec = importlib.util.find_spec("tzdata")
    assert spec is not None and spec.submodule_search_locations
    bare = tmp_path / "site"
    shutil.copytree(list(spec.submodule_search_locations)[0], bare / "tzdata",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sys, "path", [str(bare)] + [p for p in sys.path if "site-packages" not in p])
    monkeypatch.delitem(sys.modules, "tzdata", raising=False)
    entries = dict(lambda_package.tzdata_entries("Asia/Kolkata"))
    assert entries["tzdata/zoneinfo/Asia/Kolkata"] == (bare / "tzdata/zoneinfo/Asia/Kolkata").read_bytes()
    assert sorted(entries) == ["tzdata/__init__.py", "tzdata/zoneinfo/Asia/Kolkata", "tzdata/zoneinfo/Asia/__init__.py",
                               "tzdata/zoneinfo/__init__.py", "tzdata/zones"]  # the stack's zone, no other
