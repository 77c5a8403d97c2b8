"""`provision cost`: the monthly bill from the config alone, no AWS call."""

from __future__ import annotations

import io
import json
from pathlib import Path

from provision import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([*argv, "--config", str(ROOT / "stack.yml")], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cost_table_compares_scheduled_with_always_on() -> None:
    code, out, _ = run("cost", "--year", "2026")
    assert code == 0
    assert "246 trading days" in out
    assert "total per month" in out
    assert "against the same instance running 24/7" in out


def test_cost_json_and_price_override(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yml"
    prices.write_text("ec2_hourly: {t3.small: 1.0}\n")
    code, out, _ = run("cost", "--year", "2026", "--json", "--prices", str(prices))
    assert code == 0
    data = json.loads(out)
    assert data["total"]["always_on"] > data["total"]["scheduled"] > 100  # $1/h dominates both


def test_cost_with_a_missing_price_file_says_so() -> None:
    code, _, err = run("cost", "--prices", "/nonexistent/prices.yml")
    assert code == 1
    assert "/nonexistent/prices.yml" in err
