"""The monthly AWS bill a stack config implies, against running the same instance 24/7.

``monthly_cost(cfg, prices=None)`` returns a dict (see :func:`monthly_cost`);
``render(result)`` turns it into a printable table. ``cfg`` is the object
``provision.config.load`` returns. No AWS call is made: prices come from
:data:`DEFAULT_PRICES` (a dated table), overridable with a mapping or a YAML
file of the same shape (only the keys given are replaced)::

    # my-prices.yml
    as_of: "2026-01-15"
    ec2_hourly: {t3.small: 0.0224}
    ebs_gp3_gb_month: 0.0912
    assumptions: {s3_storage_gb: 3}

What is counted, for an average month of the chosen calendar year:

- instance hours: the instance runs from the schedule's start to its stop
  (plus ``stop_overhead_minutes`` for the end-of-day upload and shutdown) on
  trading days only, decided by the start function's own rule
  (:mod:`provision.rules`): the schedule's weekdays that are not exchange
  holidays, plus ``calendar.special_sessions``; a year whose holidays are not
  confirmed yet counts its weekdays, as the start function would;
- EBS: the root volume (gp3) is billed every hour, running or stopped;
- public IPv4: an Elastic IP is billed every hour, attached or idle
  ($0.005/h since February 2024); without a static IP the auto-assigned
  address is billed only while the instance runs;
- Lambda: every firing of the start and stop rules (holidays too: the start
  function checks the calendar and skips), at the functions' memory size and
  the assumed durations; requests and GB-seconds, no free tier;
- S3: an assumed stored volume and the sync / end-of-day requests.

Not counted (nil or negligible at this size): EventBridge scheduled rules,
SSM Run Command and standard parameters, SNS e-mail under the free tier,
CloudWatch Logs of two small functions, data transfer out (orders are small).
Taxes (GST on AWS India invoices) are not included.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from provision.checks import minutes
from provision.errors import ProvisionError

#: On-demand prices for ap-south-1 (Mumbai), Linux, USD, as published on the AWS
#: pricing pages as of ``as_of``. Prices change: check them, or override them.
DEFAULT_PRICES: dict[str, Any] = {
    "as_of": "2025-06-01",
    "region": "ap-south-1",
    "currency": "USD",
    "source": "AWS on-demand price lists, ap-south-1 (Mumbai), Linux",
    "hours_per_month": 730.0,
    "ec2_hourly": {
        "t3.nano": 0.0056,
        "t3.micro": 0.0112,
        "t3.small": 0.0224,
        "t3.medium": 0.0448,
        "t3.large": 0.0896,
        "t3.xlarge": 0.1792,
        "t3.2xlarge": 0.3584,
        "t4g.nano": 0.0046,
        "t4g.micro": 0.0092,
        "t4g.small": 0.0184,
        "t4g.medium": 0.0368,
        "t4g.large": 0.0736,
        "t4g.xlarge": 0.1472,
        "c5.large": 0.085,
        "c6i.large": 0.085,
        "m5.large": 0.101,
        "m6i.large": 0.101,
    },
    "ebs_gp3_gb_month": 0.0912,
    "public_ipv4_hourly": 0.005,
    "lambda_gb_second": 0.0000166667,
    "lambda_per_million_requests": 0.20,
    "s3_standard_gb_month": 0.025,
    "s3_put_per_1000": 0.005,
    "s3_get_per_1000": 0.0004,
    "assumptions": {
        # The stop function runs the end-of-day routine, then stops the instance.
        "stop_overhead_minutes": 5,
        # How long each function runs: start waits for boot, the SSM agent and the sync.
        "start_lambda_seconds": 240,
        "start_lambda_skip_seconds": 1,
        "stop_lambda_seconds": 120,
        # Code releases, wheelhouse, trade logs and ledger kept in the bucket.
        "s3_storage_gb": 1.0,
        "s3_gets_per_trading_day": 30,
        "s3_puts_per_trading_day": 10,
    },
}

def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_prices(prices: Mapping[str, Any] | str | Path | None = None) -> dict[str, Any]:
    """:data:`DEFAULT_PRICES` with ``prices`` (a mapping, or a YAML file of one) merged over it."""
    if prices is None:
        return copy.deepcopy(DEFAULT_PRICES)
    if isinstance(prices, (str, Path)):
        path = Path(prices)
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ProvisionError(f"prices file {path}: {exc.strerror}; check the path") from None
        except yaml.YAMLError as exc:
            raise ProvisionError(f"prices file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, Mapping):
            raise ProvisionError(f"prices file {path} must hold a mapping like provision.cost.DEFAULT_PRICES")
        prices = loaded
    return _merge(DEFAULT_PRICES, prices)


def schedule_days(cfg: Any, year: int, builder: Any = None) -> dict[str, Any]:
    """Per month of ``year``: days the start rule fires, trading days among them (as the start function's
    calendar gate decides them, :mod:`provision.rules`), and the holidays it skips."""
    from provision import rules

    calendar = rules.calendar(cfg, years=[year], builder=builder)
    months: list[dict[str, int]] = [{"month": m, "rule_days": 0, "trading_days": 0} for m in range(1, 13)]
    skipped: list[str] = []
    for decision in calendar.days(dt.date(year, 1, 1), dt.date(year, 12, 31)):
        # The start fires on the schedule's weekdays, and on a special session's day by its own schedule.
        if decision.day.weekday() not in calendar.weekdays and decision.reason != "special-session":
            continue
        month = months[decision.day.month - 1]
        month["rule_days"] += 1
        if decision.open:
            month["trading_days"] += 1
        elif decision.reason == "holiday":
            skipped.append(decision.day.isoformat())
    return {
        "year": year,
        "months": months,
        "rule_days": sum(m["rule_days"] for m in months),
        "trading_days": sum(m["trading_days"] for m in months),
        "holidays_on_schedule_days": skipped,
        "covered": year in calendar.covered_years,
    }


def monthly_cost(cfg: Any, prices: Mapping[str, Any] | str | Path | None = None, *,
                 year: int | None = None) -> dict[str, Any]:
    """The average monthly bill of ``year`` (default: this year) for the stack ``cfg`` describes.

    Returns ``{"lines": [{"item", "quantity", "unit", "unit_price", "scheduled", "always_on", "note"}],
    "total": {"scheduled", "always_on"}, "savings", "savings_percent", ...}`` with amounts in USD per
    month; ``always_on`` is the same stack with the instance running 24/7 (no scheduler Lambdas).
    """
    from provision.lambdas import MEMORY_MB

    p = load_prices(prices)
    a = p["assumptions"]
    year = year or dt.date.today().year
    days = schedule_days(cfg, year)
    hours_month = float(p["hours_per_month"])
    warnings: list[str] = []
    if cfg.stack.region != p["region"]:
        warnings.append(f"prices are for {p['region']}, the stack is in {cfg.stack.region}: override them")
    if not days["covered"]:
        warnings.append(f"the {cfg.calendar.exchange} holidays of {year} are not confirmed yet: its weekdays are "
                        "counted as trading days, as the start function would treat them")

    itype = cfg.instance.type
    try:
        hourly = float(p["ec2_hourly"][itype])
    except KeyError:
        raise ProvisionError(
            f"no price for instance type {itype} in the price table ({p['as_of']}); pass prices="
            f"{{'ec2_hourly': {{'{itype}': <USD per hour>}}}} or a prices YAML file") from None

    day_hours = (minutes(cfg.schedule.stop) - minutes(cfg.schedule.start)) / 60 + a["stop_overhead_minutes"] / 60
    trading_month = days["trading_days"] / 12
    rule_month = days["rule_days"] / 12
    skip_month = rule_month - trading_month
    run_hours = trading_month * day_hours

    lines: list[dict[str, Any]] = []

    def line(item: str, quantity: float, unit: str, unit_price: float, scheduled: float, always_on: float,
             note: str = "") -> None:
        lines.append({"item": item, "quantity": round(quantity, 3), "unit": unit, "unit_price": unit_price,
                      "scheduled": scheduled, "always_on": always_on, "note": note})

    line(f"EC2 {itype} instance", run_hours, "hours", hourly, run_hours * hourly, hours_month * hourly,
         f"{trading_month:.1f} trading days x {day_hours:.2f} h")
    gb = float(cfg.instance.root_volume_gb)
    ebs = gb * float(p["ebs_gp3_gb_month"])
    line(f"EBS gp3 root volume {gb:g} GB", gb, "GB-month", float(p["ebs_gp3_gb_month"]), ebs, ebs,
         "billed running or stopped")
    ip_price = float(p["public_ipv4_hourly"])
    if cfg.instance.static_ip:
        line("Elastic IP (public IPv4)", hours_month, "hours", ip_price, hours_month * ip_price,
             hours_month * ip_price, "billed attached or idle, every hour")
    else:
        line("public IPv4 (auto-assigned)", run_hours, "hours", ip_price, run_hours * ip_price,
             hours_month * ip_price, "billed while the instance runs")

    gb_mem = MEMORY_MB / 1024
    start_s = trading_month * a["start_lambda_seconds"] + skip_month * a["start_lambda_skip_seconds"]
    stop_s = trading_month * a["stop_lambda_seconds"]
    requests = 2 * rule_month
    gb_seconds = gb_mem * (start_s + stop_s)
    lambda_cost = gb_seconds * float(p["lambda_gb_second"]) + requests / 1e6 * float(p["lambda_per_million_requests"])
    line(f"Lambda start/stop ({MEMORY_MB} MB)", gb_seconds, "GB-seconds", float(p["lambda_gb_second"]),
         lambda_cost, 0.0, f"{requests:.0f} invocations, no free tier")

    s3_gb = float(a["s3_storage_gb"])
    storage = s3_gb * float(p["s3_standard_gb_month"])
    req_cost = trading_month * (a["s3_gets_per_trading_day"] / 1000 * float(p["s3_get_per_1000"])
                                + a["s3_puts_per_trading_day"] / 1000 * float(p["s3_put_per_1000"]))
    always_req = req_cost  # the same syncs and uploads happen either way
    line("S3 Standard storage + requests", s3_gb, "GB-month", float(p["s3_standard_gb_month"]),
         storage + req_cost, storage + always_req, "assumed volume")

    scheduled = sum(ln["scheduled"] for ln in lines)
    always_on = sum(ln["always_on"] for ln in lines)
    return {
        "stack": cfg.stack.name,
        "region": cfg.stack.region,
        "instance_type": itype,
        "currency": p["currency"],
        "prices_as_of": p["as_of"],
        "prices_source": p["source"],
        "year": year,
        "trading_days_year": days["trading_days"],
        "rule_days_year": days["rule_days"],
        "trading_days_month": round(trading_month, 2),
        "hours_per_trading_day": round(day_hours, 3),
        "instance_hours_month": round(run_hours, 1),
        "lines": lines,
        "total": {"scheduled": scheduled, "always_on": always_on},
        "savings": always_on - scheduled,
        "savings_percent": 100 * (always_on - scheduled) / always_on if always_on else 0.0,
        "assumptions": dict(a),
        "warnings": warnings,
    }


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _unit_price(value: float) -> str:
    return "$" + (f"{value:.7f}".rstrip("0").rstrip(".") if value < 0.001 else f"{value:g}")


def render(result: Mapping[str, Any]) -> str:
    """A printable table of :func:`monthly_cost`'s result."""
    header = ["item", "quantity", "unit price", "scheduled", "24/7", "note"]
    rows = [[ln["item"], f"{ln['quantity']:,.1f} {ln['unit']}", _unit_price(ln["unit_price"]),
             _money(ln["scheduled"]), _money(ln["always_on"]), ln["note"]] for ln in result["lines"]]
    rows.append(["total per month", "", "", _money(result["total"]["scheduled"]),
                 _money(result["total"]["always_on"]), ""])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 2, 3, 4}

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [
        f"Monthly cost of stack {result['stack']} ({result['region']}, {result['instance_type']}), average month "
        f"of {result['year']}: {result['trading_days_year']} trading days a year, "
        f"{result['hours_per_trading_day']:.2f} h each",
        f"Prices: {result['prices_source']}, as of {result['prices_as_of']} ({result['currency']}, "
        "without taxes); override with a prices mapping or YAML file",
        "",
        fmt(header).rstrip(),
        fmt(["-" * w for w in widths]).rstrip(),
    ]
    out += [fmt(r).rstrip() for r in rows[:-1]]
    out.append(fmt(["-" * w for w in widths]).rstrip())
    out.append(fmt(rows[-1]).rstrip())
    out.append("")
    out.append(f"Scheduled saves {_money(result['savings'])} a month ({result['savings_percent']:.0f}%) "
               "against the same instance running 24/7.")
    out += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(out)
