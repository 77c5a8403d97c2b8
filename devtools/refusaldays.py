"""The days the stack must refuse or skip, on the local stack of devtools/tradingday.py (after its normal day).

- ``holiday``: a scheduled start on an exchange holiday does nothing but notify.
- ``stale_token``: the next morning nobody published a token; the start function warns and the trading
  job's guard refuses (exit 3).
- ``bad_publish``: a manifest whose code hash is wrong; the start function fails and the host keeps its
  last good workspace.

Each returns what it saw, for tests/e2e/test_trading_day.py; ``make demo`` runs them after the normal day.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import boto3

from devtools.crontab import crontab_jobs, run_cron_job
from devtools.handlers import invoke, load_handlers, notifications, scheduled_event
from devtools.testhost import DayFailed
from devtools.tradingday import HOST_JOB_LOGS, IST, Day


def holiday(day: Day, on: date = date(2026, 1, 26)) -> dict[str, Any]:
    """A scheduled start on an exchange holiday: no start, one notification."""
    assert day.stack is not None
    start_mod, _ = load_handlers(day.stack.code_dir)
    before = day.instance_state()
    with day.report.step(f"holiday {on}: start Lambda skips", look=str(day.log("lambda"))) as st:
        event = scheduled_event(datetime.combine(on, datetime.min.time(), IST).replace(hour=8, minute=45))
        result, error = invoke(start_mod, event, day.stack, "start", day.log("lambda"))
        if error or not str(result.get("outcome", "")).startswith("skipped"):
            raise DayFailed(f"expected a skip, got {result.get('outcome')} {error}")
        st.detail = f"{result['outcome']}; instance stays {day.instance_state()}"
    return {"result": result, "before": before, "after": day.instance_state(),
            "notifications": notifications(day.stack.queue_url)}


def stale_token(day: Day) -> dict[str, Any]:
    """The next morning, nobody published a new token: the start warns, the trading job refuses.

    The Lambda runs with a clock set to the next trading morning (the token
    object in the bucket was written today, so it is stale then). The host's
    clock cannot be moved, so the host's token file is given yesterday's
    time, which is what it would have on a morning without a publish.
    """
    assert day.stack is not None and day.host is not None
    start_mod, _ = load_handlers(day.stack.code_dir)
    morning = day.next_trading_morning()
    tomorrow = morning.date()
    day.agent_for()
    facts: dict[str, Any] = {}
    with day.report.step(f"stale token: start Lambda on {tomorrow} warns", look=str(day.log("lambda"))) as st:
        result, _ = day.start_at(start_mod, morning, "stale token")
        facts["start"] = result
        if not any("token" in w for w in result.get("warnings", [])):
            raise DayFailed(f"no token warning: {result.get('warnings')}")
        st.detail = result["warnings"][0][:120]
    with day.report.step("stale token: the trading job refuses to start", look=HOST_JOB_LOGS) as st:
        day.age_token()
        out = run_cron_job(day.host, crontab_jobs(day.host), "trading", day.log("cron"))
        facts["trading_exit"] = out.returncode
        if out.returncode != 3:  # the guard's "stale token" exit
            raise DayFailed(f"the trading job should refuse a stale token with exit 3, got {out.returncode}")
        st.detail = f"refused (exit {out.returncode})"
    facts["notifications"] = notifications(day.stack.queue_url)
    return facts


def bad_publish(day: Day) -> dict[str, Any]:
    """A manifest whose code hash is wrong: the host keeps the last good workspace, start fails."""
    assert day.stack is not None and day.host is not None
    start_mod, _ = load_handlers(day.stack.code_dir)
    day.agent_for()
    bucket = day.stack.functions["start"]["ST_BUCKET"]
    s3 = boto3.client("s3")
    workdir = day.workdir_on_host()
    show = f"readlink -f {workdir}; sudo cat /var/lib/simpletrader/ready.json"
    before = day.host.sh(show).stdout
    facts: dict[str, Any] = {"workspace_before": before}
    with day.report.step("bad publish: manifest hash mismatch, start reports failure",
                          look=str(day.log("ssm-agent"))) as st:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key="deploy/manifest.json")["Body"].read())
        facts["manifest"] = manifest
        for obj in manifest["objects"]:
            if obj["role"] == "code":
                obj["sha256"] = "0" * 64
        manifest["release"] = manifest["release"] + "-tampered"
        s3.put_object(Bucket=bucket, Key="deploy/manifest.json", Body=json.dumps(manifest).encode())
        event = {"force": True}
        result, error = invoke(start_mod, event, day.stack, "start", day.log("lambda"))
        facts["start"], facts["error"] = result, error
        if not error:
            raise DayFailed("start succeeded on a tampered manifest")
        st.detail = f"start failed as it should: {error[:100]}"
    with day.report.step("bad publish: the host kept the last good workspace") as st:
        after = day.host.sh(show).stdout
        facts["workspace_after"] = after
        if after != before:
            raise DayFailed(f"workspace changed:\n{before}\n->\n{after}")
        st.detail = after.splitlines()[0]
    # a good publish again, for whatever runs next
    day.provision("publish", "--wheelhouse", str(day.wheelhouse()))
    facts["notifications"] = notifications(day.stack.queue_url)
    return facts
