"""Trading job (09:14): an example stand-in that places a few fake trades.

Reads the broker credentials from the workspace (without printing them),
writes ``trade_logs/<date>/trades.csv`` and appends to ``ledger/ledger.csv``.
It imports ``six`` to prove the synced virtualenv is the one running it.
"""

from __future__ import annotations

import csv
import json

import six
from common import load_credentials, today, workspace

FAKE_TRADES = [
    ("09:15:02", "NSE:INFY", "BUY", 10, 1501.5),
    ("11:02:40", "NSE:INFY", "SELL", 10, 1509.0),
    ("13:30:11", "NSE:TCS", "BUY", 2, 3398.25),
]


def main() -> None:
    root = workspace()
    date = today()
    keys, _token = load_credentials(root)
    print(f"trading: credentials loaded (keys: {', '.join(sorted(keys))}); six {six.__version__}")
    context_path = root / "data" / "historical_context.json"
    if context_path.exists():
        context = json.loads(context_path.read_text(encoding="utf-8"))
        print(f"trading: using the context of {context.get('date')}")
    logs = root / "trade_logs" / date
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "trades.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["time", "symbol", "side", "quantity", "price"])
        writer.writerows(FAKE_TRADES)
    ledger = root / "ledger" / "ledger.csv"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    new = not ledger.exists()
    with open(ledger, "a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["date", "symbol", "side", "quantity", "price"])
        for _time, symbol, side, qty, price in FAKE_TRADES:
            writer.writerow([date, symbol, side, qty, price])
    print(f"trading: {len(FAKE_TRADES)} fake trades written to trade_logs/{date}/trades.csv")


if __name__ == "__main__":
    main()
