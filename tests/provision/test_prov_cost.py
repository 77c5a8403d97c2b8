"""provision/cost.py: the monthly bill a config implies (no AWS, no host)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision import config as config_mod
from provision import cost
from provision.errors import ProvisionError

ROOT = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, **changes: Any) -> config_mod.Config:
    raw = yaml.safe_load((ROOT / "stack.yml").read_text())
    for k, v in raw["artifacts"].items():
        raw["artifacts"][k] = str(ROOT / v)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config_mod.load(str(path))


def line(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(ln for ln in result["lines"] if ln["item"].startswith(prefix))


def test_instance_hours_are_trading_days_times_the_window(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    r = cost.monthly_cost(cfg, year=2026)
    days = cost.schedule_days(cfg, 2026)
    assert r["trading_days_year"] == days["trading_days"]
    # Mon-Fri in 2026 is 261 days; NSE closes on some of them.
    assert days["rule_days"] == 261
    assert 230 < days["trading_days"] < 261
    hours = (15 * 60 + 40 - (8 * 60 + 45)) / 60 + 5 / 60
    ec2 = line(r, "EC2 t3.small")
    assert ec2["quantity"] == pytest.approx(days["trading_days"] / 12 * hours, abs=0.01)
    assert ec2["scheduled"] == pytest.approx(ec2["quantity"] * 0.0224, rel=1e-3)
    assert ec2["always_on"] == pytest.approx(730 * 0.0224)


def test_elastic_ip_is_billed_every_hour_even_while_stopped(tmp_path: Path) -> None:
    r = cost.monthly_cost(load(tmp_path), year=2026)
    eip = line(r, "Elastic IP")
    assert eip["scheduled"] == eip["always_on"] == pytest.approx(730 * 0.005)
    r2 = cost.monthly_cost(load(tmp_path, instance__static_ip=False), year=2026)
    ip = line(r2, "public IPv4")
    assert ip["scheduled"] == pytest.approx(line(r2, "EC2")["quantity"] * 0.005, rel=1e-3)
    assert ip["always_on"] == pytest.approx(730 * 0.005)


def test_ebs_lambda_s3_and_totals(tmp_path: Path) -> None:
    r = cost.monthly_cost(load(tmp_path), year=2026)
    assert line(r, "EBS")["scheduled"] == pytest.approx(16 * 0.0912)
    lam = line(r, "Lambda")
    assert 0 < lam["scheduled"] < 0.5 and lam["always_on"] == 0
    assert r["total"]["scheduled"] == pytest.approx(sum(ln["scheduled"] for ln in r["lines"]))
    assert r["total"]["always_on"] > r["total"]["scheduled"]
    assert r["savings"] == pytest.approx(r["total"]["always_on"] - r["total"]["scheduled"])


def test_holidays_and_special_sessions_change_the_day_count(tmp_path: Path) -> None:
    base = cost.schedule_days(load(tmp_path), 2026)["trading_days"]
    # 2026-12-31 is a Thursday; 2026-11-07 a Saturday.
    extra = load(tmp_path, calendar__extra_holidays=["2026-12-31"],
                 calendar__special_sessions=[{"date": "2026-11-07", "name": "Muhurat trading"}])
    days = cost.schedule_days(extra, 2026)
    assert days["trading_days"] == base  # one day fewer, one more
    assert dt.date(2026, 12, 31).weekday() == 3 and dt.date(2026, 11, 7).weekday() == 5
    assert days["months"][10]["trading_days"] == cost.schedule_days(load(tmp_path), 2026)["months"][10][
        "trading_days"] + 1


def test_prices_override_by_mapping_and_yaml_file(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    r = cost.monthly_cost(cfg, {"ec2_hourly": {"t3.small": 1.0}, "as_of": "2030-01-01"}, year=2026)
    assert line(r, "EC2")["always_on"] == pytest.approx(730.0)
    assert r["prices_as_of"] == "2030-01-01"
    assert line(r, "EBS")["scheduled"] == pytest.approx(16 * 0.0912)  # untouched keys keep their defaults
    prices = tmp_path / "prices.yml"
    prices.write_text("public_ipv4_hourly: 0.01\nassumptions: {s3_storage_gb: 100}\n")
    r2 = cost.monthly_cost(cfg, prices, year=2026)
    assert line(r2, "Elastic IP")["scheduled"] == pytest.approx(7.3)
    assert line(r2, "S3")["quantity"] == 100
    assert r2["assumptions"]["start_lambda_seconds"] == 240


def test_unknown_instance_type_says_how_to_price_it(tmp_path: Path) -> None:
    cfg = load(tmp_path, instance__type="x9.huge")
    with pytest.raises(ProvisionError, match=r"x9\.huge.*ec2_hourly"):
        cost.monthly_cost(cfg, year=2026)
    r = cost.monthly_cost(cfg, {"ec2_hourly": {"x9.huge": 2.0}}, year=2026)
    assert line(r, "EC2")["always_on"] == pytest.approx(1460.0)


def test_bad_prices_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="not valid YAML"):
        bad = tmp_path / "p.yml"
        bad.write_text("a: [\n")
        cost.load_prices(bad)
    with pytest.raises(ProvisionError, match="check the path"):
        cost.load_prices(tmp_path / "missing.yml")


def test_other_region_warns(tmp_path: Path) -> None:
    cfg = load(tmp_path, stack__region="us-east-1")
    r = cost.monthly_cost(cfg, year=2026)
    assert any("us-east-1" in w for w in r["warnings"])


def test_render_shows_every_line_totals_and_the_price_date(tmp_path: Path) -> None:
    r = cost.monthly_cost(load(tmp_path), year=2026)
    text = cost.render(r)
    for ln in r["lines"]:
        assert ln["item"] in text
    assert f"${r['total']['scheduled']:,.2f}" in text and f"${r['total']['always_on']:,.2f}" in text
    assert cost.DEFAULT_PRICES["as_of"] in text
    assert "e-05" not in text
