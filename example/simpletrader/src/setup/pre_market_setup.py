"""Pre-market job (08:55): prepare today's historical context.

An example stand-in for the real SimpleTrader job: it writes a small
context file that the trading job reads.
"""

from __future__ import annotations

import json

from common import today, workspace


def main() -> None:
    root = workspace()
    date = today()
    context = {
        "date": date,
        "instruments": ["NSE:INFY", "NSE:TCS", "NSE:RELIANCE"],
        "previous_close": {"NSE:INFY": 1500.0, "NSE:TCS": 3400.0, "NSE:RELIANCE": 2450.0},
    }
    out = root / "data" / "historical_context.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(context, indent=1) + "\n", encoding="utf-8")
    print(f"pre-market: wrote {out.relative_to(root)} for {date}")


if __name__ == "__main__":
    main()
