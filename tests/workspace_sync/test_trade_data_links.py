"""Trade data at the edges: what eod cannot upload is said so, and a sync during the day keeps the day whole.

A trader who makes ``trade_logs`` a link to a folder kept across releases
would otherwise read `eod: uploaded 0 files` with no warning, every day. A
sync in the afternoon would otherwise start the day's trade log afresh, and
the end of day would upload the afternoon's over the morning's.
"""

from __future__ import annotations

import os
from typing import Any

from example_release import BUCKET, body
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


def test_a_sync_during_the_day_carries_todays_trade_logs_and_eod_uploads_the_whole_day(
        host: Host, s3: Any, published: dict[str, Any]) -> None:
    assert host.run("sync").returncode == 0
    host.overrides["closure_script"] = ""
    today, yesterday = exchange_today(), exchange_today(-1)
    for day, text in ((today, "09:15 INFY BUY 10\n"), (yesterday, "yesterday\n")):
        (host.workdir / "trade_logs" / day).mkdir(parents=True)
        (host.workdir / "trade_logs" / day / "trades.csv").write_text(text)
    morning = os.path.realpath(host.workdir)

    again = host.run("sync")  # publish --token ... --sync after a token refresh, say
    assert again.returncode == 0, again.stdout + again.stderr
    assert os.path.realpath(host.workdir) != morning
    assert f"carried over today's trade logs (trade_logs/{today}/)" in again.stdout
    assert (host.workdir / "trade_logs" / today / "trades.csv").read_text() == "09:15 INFY BUY 10\n"
    assert not (host.workdir / "trade_logs" / yesterday).exists()  # uploaded by the sync, not carried
    with open(host.workdir / "trade_logs" / today / "trades.csv", "a") as fh:
        fh.write("13:30 TCS BUY 2\n")  # the afternoon's job appends

    eod = host.run("eod")
    assert eod.returncode == 0, eod.stdout + eod.stderr
    assert body(s3, f"logs/{today}/trades.csv") == b"09:15 INFY BUY 10\n13:30 TCS BUY 2\n"
    assert body(s3, f"logs/{yesterday}/trades.csv") == b"yesterday\n"
