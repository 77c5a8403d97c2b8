"""The throwaway stack `make aws-check` makes: its config, what it costs, and when a run may start.

Made from stack.yml with a unique stack name and bucket suffix, so nothing of
the operator's is touched; its start, stop and job times are moved hours away
from the run and it has no special sessions, so that no schedule of it fires
during the check.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from devtools.testhost import ROOT
from devtools.worlds import CheckFailed
from provision.checks import minutes

CHECK_MINUTES = 30  # what the cost estimate assumes a run takes
# The throwaway stack's schedule: one of these windows (exchange-local), the one further from now, so that no
# rule of it fires while the check runs; the jobs' times are inside it, as the config requires.
QUIET_WINDOWS = (("02:00", "03:00"), ("14:00", "15:00"))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def quiet_schedule(now_local: dt.datetime, jobs: int) -> tuple[str, str, list[str]]:
    """(start, stop, the jobs' times): the window of QUIET_WINDOWS whose times are furthest ahead of now."""
    at = now_local.hour * 60 + now_local.minute

    def ahead(window: tuple[str, str]) -> int:
        return min((minutes(t) - at) % 1440 for t in window)

    start, stop = max(QUIET_WINDOWS, key=ahead)
    first, last = minutes(start) + 5, minutes(stop) - 1
    step = max(1, min(5, (last - first) // max(1, jobs)))
    if jobs and first + (jobs - 1) * step > last:
        raise CheckFailed(f"stack.yml has {jobs} cron jobs; the check's schedule window {start}-{stop} holds "
                          f"{last - first + 1}, each at a minute of its own")
    return start, stop, [_hhmm(first + i * step) for i in range(jobs)]


def throwaway_config(workdir: Path, access: str, token: str, now: dt.datetime | None = None,
                     source: Path = ROOT / "stack.yml") -> tuple[Path, dict[str, Any]]:
    """stack.yml with a unique stack name, artifact paths made absolute, the access mode asked for, and the
    start, stop and job times moved away from now (the rules are live: they would fire the check's functions
    and jobs in the middle of it)."""
    cfg = yaml.safe_load(source.read_text())
    cfg["stack"]["name"] = f"stcheck-{token}"
    cfg["network"]["access"] = access
    cfg["network"]["ssh_ingress"] = ["auto"] if access == "ssh" else []
    cfg["host"]["token_fresh_after"] = "00:00"  # noqa: S105 - a time of day: the token is published just before
    zone = ZoneInfo(cfg["schedule"]["timezone"])
    start, stop, times = quiet_schedule((now or dt.datetime.now(dt.timezone.utc)).astimezone(zone),
                                        len(cfg["cron_jobs"]))
    cfg["schedule"].update(start=start, stop=stop)
    for job, at in zip(cfg["cron_jobs"], times):
        job["time"] = at
    # A special session's one-time schedules would fire at its own hours, today's in the middle of the check,
    # and one that keeps the weekly hours would hold its jobs outside the moved window.
    cfg["calendar"]["special_sessions"] = []
    for key, value in cfg["artifacts"].items():
        cfg["artifacts"][key] = str((ROOT / value).resolve())
    path = workdir / "check-stack.yml"
    path.write_text("# Written by devtools/awscheck.py: a throwaway stack, removed at the end\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return path, cfg


def check_cost(cfg_path: Path) -> str:
    """What one run of the check costs (the instance, its address and volume for CHECK_MINUTES)."""
    from provision import config as config_mod
    from provision.cost import DEFAULT_PRICES

    cfg = config_mod.load(cfg_path)
    hours = CHECK_MINUTES / 60
    hourly = DEFAULT_PRICES["ec2_hourly"].get(cfg.instance.type)
    if hourly is None:
        return f"no price for {cfg.instance.type} in provision/cost.py's table"
    total = (hourly + DEFAULT_PRICES["public_ipv4_hourly"]) * hours
    total += DEFAULT_PRICES["ebs_gp3_gb_month"] * cfg.instance.root_volume_gb * hours / 730
    return (f"about ${total:.3f} for a {CHECK_MINUTES}-minute run ({cfg.instance.type}, Elastic IP, "
            f"{cfg.instance.root_volume_gb} GiB gp3; Lambda, S3 and SSM calls are a fraction of a cent; "
            f"prices as of {DEFAULT_PRICES['as_of']})")


def too_close_to_midnight(cfg: dict[str, Any], minutes: int, now: dt.datetime | None = None) -> str | None:
    """Why the check should not start now: it would run past midnight in the exchange's zone, where the ready
    marker, the jobs' guard and the uploaded trade logs change their day."""
    zone = ZoneInfo(cfg["schedule"]["timezone"])
    local = (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone)
    left = 1440 - (local.hour * 60 + local.minute)
    if left > minutes:
        return None
    return (f"it is {local:%H:%M} in {zone.key}, and the check takes up to {minutes} minutes: it would cross "
            f"midnight there, where the workspace's day changes. Start it after 00:00 {zone.key} "
            f"(in {left} minutes) or earlier in the day")
