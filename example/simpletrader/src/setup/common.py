"""Paths and dates shared by the example trading jobs.

Imported as `common` (a script's own directory is first on sys.path). The jobs
run with the working directory at the synced workspace (the cron
jobs ``cd`` there) and ``PYTHONPATH=<workspace>/src``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from zoneinfo import ZoneInfo

TIMEZONE = os.environ.get("ST_TIMEZONE", "Asia/Kolkata")


def workspace() -> Path:
    """The workspace root: $SIMPLETRADER_WORKDIR, else two levels above src/setup."""
    env = os.environ.get("SIMPLETRADER_WORKDIR")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def today() -> str:
    """Today's date at the exchange (YYYY-MM-DD)."""
    return dt.datetime.now(ZoneInfo(TIMEZONE)).date().isoformat()


def load_credentials(root: Path) -> tuple[dict[str, str], str]:
    """Read keys.json and access_token.txt. Never print what they contain."""
    keys_path = root / "keys.json"
    token_path = root / "access_token.txt"
    with open(keys_path, encoding="utf-8") as fh:
        keys = json.load(fh)
    token = token_path.read_text(encoding="utf-8").strip()
    if not isinstance(keys, dict) or not token:
        raise SystemExit(f"credentials in {root} are incomplete (keys.json / access_token.txt)")
    return keys, token
