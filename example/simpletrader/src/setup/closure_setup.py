"""Closure job (end of day, run by ``simpletrader-workspace eod``).

Writes a summary of the day's trades into ``trade_logs/<date>/summary.txt``.
"""

from __future__ import annotations

import csv

from common import today, workspace


def main() -> None:
    root = workspace()
    date = today()
    day = root / "trade_logs" / date
    day.mkdir(parents=True, exist_ok=True)
    trades = []
    if (day / "trades.csv").exists():
        with open(day / "trades.csv", newline="", encoding="utf-8") as fh:
            trades = list(csv.DictReader(fh))
    net = sum((-1 if t["side"] == "BUY" else 1) * int(t["quantity"]) * float(t["price"]) for t in trades)
    summary = f"date {date}\ntrades {len(trades)}\nnet cash {net:.2f}\n"
    (day / "summary.txt").write_text(summary, encoding="utf-8")
    print(f"closure: {len(trades)} trades summarised in trade_logs/{date}/summary.txt")


if __name__ == "__main__":
    main()
