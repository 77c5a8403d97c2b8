"""Trade data eod does not upload (links, which root never follows, and what is not a regular file) is said so.

A trader who makes ``trade_logs`` a link to a folder kept across releases
would otherwise read `eod: uploaded 0 files` with no warning, every day.
"""

from __future__ import annotations

import os
from typing import Any

from example_release import BUCKET
from wshelpers import Host, exchange_today


def test_trade_data_behind_links_is_a_warning_of_eod(host: Host, s3: Any, published: dict[str, Any]) -> None:
    assert host.run("sync").returncode == 0
    host.overrides["closure_script"] = ""
    kept = host.base / "kept-across-releases" / exchange_today()
    kept.mkdir(parents=True)
    (kept / "trades.csv").write_text("t,INFY,BUY,10\n")
    (host.workdir / "trade_logs").symlink_to(kept.parent)
    ledger = host.workdir / "ledger"
    ledger.mkdir(exist_ok=True)
    (ledger / "positions.csv").symlink_to(kept / "trades.csv")
    os.mkfifo(ledger / "pipe")

    eod = host.run("eod")
    assert eod.returncode == 0, eod.stdout + eod.stderr
    assert eod.result is not None
    assert eod.result["warnings"] == [
        "trade data not uploaded, links or not regular files: trade_logs, ledger/pipe, ledger/positions.csv"]
    assert eod.last.endswith("; WARNING trade data not uploaded, links or not regular files: trade_logs, "
                             "ledger/pipe, ledger/positions.csv")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="logs/").get("KeyCount", 0) == 0
