"""A whole trading day end to end, then the negative days, then a migrating user's days (needs root).

The emulator is AWS, a Debian 11 test host is the EC2 instance; provision,
the playbooks, the host routines and the Lambda handlers run unmodified.
The tests run in file order on one stack, as the days follow each other:
the normal day (the original program's layout: stack.yml's defaults), a
holiday, a stale token, a bad publish (devtools/refusaldays.py), a day with
token_check off and no token published, and a special evening session
(devtools/migrationdays.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from devtools import migrationdays, refusaldays
from devtools.tradingday import Day

pytestmark = [pytest.mark.root, pytest.mark.testhost, pytest.mark.xdist_group("trading-day")]  # one stack, in order

ROOT = Path(__file__).resolve().parents[2]
WORKDIR = "/home/ec2-user/projects/SimpleTrader"
FAKE_SECRETS = [
    json.loads((ROOT / "example/secrets/keys.json").read_text()),
    (ROOT / "example/secrets/access_token.txt").read_text().strip(),
]


def secret_values() -> list[str]:
    values = []
    for item in FAKE_SECRETS:
        if isinstance(item, dict):
            values += [str(v) for v in item.values() if len(str(v)) >= 8]
        else:
            values.append(item)
    assert values, "the example secrets must hold values to look for"
    return values


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    d = Day(tmp_path_factory.mktemp("day"), host_name="e2e-host")
    try:
        d.bring_up()
        yield d
    finally:
        print(d.report.render())
        d.tear_down()


@pytest.fixture(scope="module")
def normal(day: Day) -> dict[str, Any]:
    return day.trading_day()


def objects(bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found


def test_normal_day_starts_syncs_trades_uploads_and_stops(day: Day, normal: dict[str, Any]) -> None:
    assert day.stack is not None and day.host is not None
    assert normal["start"]["outcome"] == "synced"
    assert normal["stop"]["ok"] is True
    assert day.instance_state() == "stopped"
    # the functions sent the stack's own documents, and the agent ran their fixed command lines, in order
    assert day.agent is not None
    assert day.agent.sent[:2] == ["simpletrader-sync", "simpletrader-eod"]
    assert day.agent.ran[:2] == ["simpletrader-workspace sync", "simpletrader-workspace eod"]

    bucket = day.stack.functions["start"]["ST_BUCKET"]
    # the host files the day's logs under its own exchange-local date (the demo's event may name
    # the next trading day when it runs on a weekend)
    host_day = day.host.sh("TZ=Asia/Kolkata date +%F").stdout.strip()
    prefixes = day.prefixes()  # the original app's, by default: SimpleTraderLogs/, SimpleTraderLedger/
    logs = objects(bucket, f"{prefixes['logs']}{host_day}/")
    assert any(k.endswith("trades.csv") for k in logs), sorted(logs)
    ledger = objects(bucket, prefixes["ledger"])
    assert any(k.endswith("ledger.csv") for k in ledger), sorted(ledger)


def test_normal_day_host_files_and_modes(day: Day, normal: dict[str, Any]) -> None:
    assert day.host is not None
    out = day.host.sh(
        f"stat -c '%a %U %n' $(readlink -f {WORKDIR})/keys.json $(readlink -f {WORKDIR})/access_token.txt; "
        f"test -L {WORKDIR} && echo symlink; "
        "sudo cat /var/lib/simpletrader/ready.json").stdout.splitlines()
    assert out[0].startswith("600 ec2-user ") and out[0].endswith("keys.json")
    assert out[1].startswith("600 ec2-user ") and out[1].endswith("access_token.txt")
    assert out[2] == "symlink"
    ready = json.loads("\n".join(out[3:]))
    assert ready["release"]


def test_normal_day_notifications(day: Day, normal: dict[str, Any]) -> None:
    subjects = [n["subject"] for n in normal["notifications"]]
    assert len(subjects) == 2, subjects
    assert any("start" in s.lower() for s in subjects)
    assert any("stop" in s.lower() for s in subjects)


def test_holiday_no_start_one_notification(day: Day, normal: dict[str, Any]) -> None:
    facts = refusaldays.holiday(day)
    assert facts["result"]["outcome"].startswith("skipped")
    assert facts["before"] == facts["after"] == "stopped"
    assert len(facts["notifications"]) == 1
    assert "holiday" in (facts["notifications"][0]["subject"] + facts["notifications"][0]["message"]).lower()


def test_stale_token_warns_and_trading_job_refuses(day: Day, normal: dict[str, Any]) -> None:
    facts = refusaldays.stale_token(day)
    assert any("token" in w for w in facts["start"]["warnings"])
    assert facts["trading_exit"] == 3  # the guard's "stale token" exit, not any other refusal
    assert any("token" in n["message"].lower() for n in facts["notifications"])


def test_bad_publish_keeps_workspace_and_fails_start(day: Day, normal: dict[str, Any]) -> None:
    facts = refusaldays.bad_publish(day)
    assert facts["error"]
    assert facts["workspace_after"] == facts["workspace_before"]
    assert any("fail" in n["subject"].lower() for n in facts["notifications"])


def test_original_layout_the_closure_ran_and_data_and_job_logs_are_under_the_original_prefixes(
        day: Day, normal: dict[str, Any]) -> None:
    assert day.stack is not None and day.host is not None
    # stack.yml's defaults are the original app's: its closure script and its bucket prefixes.
    config = yaml.safe_load(day.config.read_text())
    assert config["eod"]["closure_script"] == "src/setup/closure_setup.py"
    assert (ROOT / "example/simpletrader/src/setup/closure_setup.py").is_file()
    assert day.prefixes()["logs"] == "SimpleTraderLogs/" and day.prefixes()["ledger"] == "SimpleTraderLedger/"
    bucket = day.stack.functions["start"]["ST_BUCKET"]
    host_day = day.host.sh("TZ=Asia/Kolkata date +%F").stdout.strip()
    logs = objects(bucket, f"SimpleTraderLogs/{host_day}/")
    # The closure script ran before the upload: its summary of the day's trades is in the bucket.
    assert b"trades 3" in logs[f"SimpleTraderLogs/{host_day}/summary.txt"]
    assert f"SimpleTraderLogs/{host_day}/trades.csv" in logs
    assert "SimpleTraderLedger/ledger.csv" in objects(bucket, "SimpleTraderLedger/")
    # The cron jobs' logs went up with them, under jobs/.
    trading = logs[f"SimpleTraderLogs/{host_day}/jobs/trading-{host_day}.log"].decode()
    assert "starting" in trading and "finished src/setup/setup.py: exit 0" in trading
    assert f"SimpleTraderLogs/{host_day}/jobs/pre-market-setup-{host_day}.log" in logs
    # The closure script's own output went up beside them, not into the stop function's SSM output.
    assert b"closure: 3 trades summarised" in logs[f"SimpleTraderLogs/{host_day}/jobs/closure-{host_day}.log"]
    assert day.agent is not None
    eod_output = [r["StandardOutputContent"] for r in day.agent.results.values() if r["DocumentName"].endswith("-eod")]
    assert eod_output and not [o for o in eod_output if "closure: 3 trades" in o]
    assert normal["stop"]["warnings"] == []  # the closure script is there: nothing to warn of
    assert "job logs (SimpleTraderLogs/" in normal["stop"]["command"]["output"]


@pytest.fixture(scope="module")
def token_off(day: Day, normal: dict[str, Any]) -> dict[str, Any]:
    return migrationdays.token_check_off(day)


def test_token_check_off_start_reads_no_token_time_and_the_job_runs(token_off: dict[str, Any]) -> None:
    start = token_off["start"]
    assert start["outcome"] == "synced"
    assert not any("token" in w for w in start["warnings"]), start["warnings"]
    assert token_off["manifest_key"] not in token_off["bucket_reads"]  # no publication time read
    assert token_off["trading_exit"] == 0  # the same day-old token the stale-token day refused (exit 3)
    log = token_off["trading_log"]
    assert "starting" in log and "REFUSED" not in log and "WARNING" not in log, log
    assert token_off["stop"]["outcome"] == "stopped"
    assert not any("token" in (n["subject"] + n["message"]).lower() for n in token_off["notifications"])


@pytest.fixture(scope="module")
def session(day: Day, token_off: dict[str, Any]) -> dict[str, Any]:
    return migrationdays.special_session(day)


def test_special_session_cron_entries(session: dict[str, Any]) -> None:
    d = dt.date.fromisoformat(session["date"])
    crontab = session["crontab"]
    assert crontab[f"simpletrader-trading@{d.isoformat()}"] == ["14", "18", str(d.day), str(d.month), "*"]
    # The weekly entries keep schedule.weekdays: nothing extra fires on other weekends, and the session's
    # date is the only one with an entry of its own.
    weekly = {k: v for k, v in crontab.items() if "@" not in k}
    assert weekly == {"simpletrader-pre-market-setup": ["55", "8", "*", "*", "1,2,3,4,5"],
                      "simpletrader-trading": ["14", "9", "*", "*", "1,2,3,4,5"]}
    assert [k for k in crontab if "@" in k] == [f"simpletrader-trading@{d.isoformat()}"]


def test_special_session_weekly_firings_and_entries_do_nothing(session: dict[str, Any]) -> None:
    assert session["weekly_start"]["outcome"] == "skipped-session-hours"
    assert session["weekly_stop"]["outcome"] == "skipped-session-hours"
    pre, trading = session["weekly_pre-market-setup"], session["weekly_trading"]
    assert pre["exit"] == 0 and "SKIPPED" in pre["log"] and "does not run today" in pre["log"], pre
    assert trading["exit"] == 0 and "trading runs today at 18:14" in trading["log"], trading
    assert "starting" not in pre["log"] + trading["log"]


def test_special_session_starts_trades_and_stops_at_its_own_times(day: Day, session: dict[str, Any]) -> None:
    assert day.stack is not None
    assert session["session_start"]["outcome"] == "synced"
    run = session["session_trading"]
    assert run["exit"] == 0 and "starting" in run["log"] and "finished src/setup/setup.py: exit 0" in run["log"]
    assert session["session_stop"]["outcome"] == "stopped" and day.instance_state() == "stopped"
    subjects = [n["subject"] for n in session["notifications"]]
    assert len(subjects) == 4, subjects
    assert sum("not now (the special session has its own hours)" in s for s in subjects) == 2
    assert any("start" in s and "started and synced" in s for s in subjects)
    assert any("stop" in s and "end of day done" in s for s in subjects)
    # The day's trading log went up at the session's stop: the weekly entry's skip and the session's run.
    d = session["date"]
    bucket = day.stack.functions["start"]["ST_BUCKET"]
    log = objects(bucket, f"SimpleTraderLogs/{d}/jobs/trading-{d}.log")[f"SimpleTraderLogs/{d}/jobs/trading-{d}.log"]
    assert b"trading runs today at 18:14" in log and log.decode().endswith(run["log"])


def test_no_log_contains_a_planted_secret(day: Day, normal: dict[str, Any]) -> None:
    logs = [p for p in day.logs.glob("*.log")]
    assert logs
    assert day.host is not None
    host_logs = day.host.sh(f"sudo find $(dirname {WORKDIR}) /var/log -name '*.log' -type f "
                            "-exec cat {} + 2>/dev/null; sudo journalctl --no-pager 2>/dev/null | tail -n 5000",
                            check=False).stdout
    for secret in secret_values():
        for path in logs:
            assert secret not in path.read_text(errors="replace"), f"{secret[:4]}... leaked into {path}"
        assert secret not in host_logs, f"{secret[:4]}... leaked into a log on the host"
