"""`make aws-check`'s real-account path (devtools/awscheck.py, devtools/worlds.py) without an account.

Every AWS call is answered here (botocore's ``_make_api_call`` replaced), so
the tests see each call's operation, parameters and the region of the client
that made it. tests/e2e/test_awscheck_local.py runs the whole check against
the local world.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.response import StreamingBody

from devtools import awscheck, throwaway
from devtools.worlds import AwsWorld, CheckFailed, LocalWorld, function_log_groups

REGION = "ap-south-1"  # stack.region of the throwaway stack


@dataclass
class Api:
    """The AWS calls made, and the answers given, by operation name."""

    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)  # service, region, op, params
    configs: list[Any] = field(default_factory=list)  # each call's client config
    answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)

    def regions(self, operation: str) -> list[str]:
        return [region for _, region, op, _ in self.calls if op == operation]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Api:
    recorded = Api()

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        recorded.calls.append((client.meta.service_model.service_name, client.meta.region_name, operation, params))
        recorded.configs.append(client.meta.config)
        return recorded.answers[operation](params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    return recorded


@pytest.fixture(params=["eu-west-1", None], ids=["profile-in-another-region", "profile-without-region"])
def profile(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """An operator's AWS profile whose region is not the stack's, or that has none."""
    region = request.param
    config = tmp_path / "aws-config"
    config.write_text("[profile trading]\n" + (f"region = {region}\n" if region else ""))
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "trading")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no session left over from another test
    return str(region)


def payload(body: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(body).encode()
    return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(data), len(data))}


def test_invoke_calls_the_function_in_the_stacks_region(api: Api, profile: str | None, tmp_path: Path) -> None:
    api.answers["Invoke"] = lambda params: payload({"outcome": "synced", "date": "2026-03-02"})
    world = AwsWorld(tmp_path, "-check-0a1b2c", REGION)
    result = world.invoke("stcheck-0a1b2c-start", {"force": True}, tmp_path / "lambda.log")
    assert result == {"outcome": "synced", "date": "2026-03-02"}
    assert api.regions("Invoke") == [REGION]
    [(_, _, _, params)] = api.calls
    assert params["FunctionName"] == "stcheck-0a1b2c-start" and json.loads(params["Payload"]) == {"force": True}
    # It waits for the function's whole run (up to its 900 s timeout) and is not retried.
    [config] = api.configs
    assert config.read_timeout == 960 and config.retries["total_max_attempts"] == 1


def test_every_client_of_the_real_account_path_is_in_the_stacks_region(profile: str | None, tmp_path: Path) -> None:
    world = AwsWorld(tmp_path, "-check-0a1b2c", REGION)
    for service in ("s3", "ec2", "logs", "lambda"):
        assert world.client(service).meta.region_name == REGION, service


# --------------------------------------------------------------------------- the clean-up, against the emulator


def stack_left(stack: str, bucket_suffix: str) -> dict[str, list[str]]:
    """What of ``stack`` exists in the emulator, read straight from it, kind by kind."""
    ec2 = boto3.client("ec2")
    tagged = [{"Name": "tag:Stack", "Values": [stack]}]
    live = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    logs = boto3.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{stack}-")["logGroups"]
    return {
        "instance": [i["InstanceId"] for r in ec2.describe_instances(Filters=tagged + live)["Reservations"]
                     for i in r["Instances"]],
        "vpc": [v["VpcId"] for v in ec2.describe_vpcs(Filters=tagged)["Vpcs"]],
        "security_group": [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]],
        "eip": [a["AllocationId"] for a in ec2.describe_addresses(Filters=tagged)["Addresses"]],
        "key_pair": [k["KeyName"] for k in ec2.describe_key_pairs(Filters=tagged)["KeyPairs"]],
        "bucket": [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]
                   if b["Name"].endswith(bucket_suffix)],
        "function": [f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]
                     if f["FunctionName"].startswith(f"{stack}-")],
        "role": [r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"] if r["RoleName"].startswith(stack)],
        "rule": [r["Name"] for r in boto3.client("events").list_rules(NamePrefix=f"{stack}-")["Rules"]],
        "topic": [t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"] if f":{stack}-" in t["TopicArn"]],
        "log_group": [g["logGroupName"] for g in logs],
    }


def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, present: bool = True) -> None:
    """PATH with a stand-in session-manager-plugin (or with none), and the system's ssh."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if present:
        plugin = bin_dir / "session-manager-plugin"
        plugin.write_text("#!/bin/sh\necho 1.2.707.0\n")
        plugin.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def test_a_failed_step_still_removes_the_stack_and_its_functions_log_groups(
        moto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("s3_bucket_suffix", raising=False)
    monkeypatch.delenv("S3_BUCKET_SUFFIX", raising=False)
    plugin_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(awscheck, "too_close_to_midnight", lambda *_a, **_k: None)  # whatever the hour of the run
    boto3.client("logs").create_log_group(logGroupName="/aws/lambda/someone-elses-function")
    seen: dict[str, Any] = {}

    def converge_fails(check: awscheck.Check) -> None:
        # The start function ran once (Lambda made its log group), then a step failed.
        for group in function_log_groups(check.stack):
            boto3.client("logs").create_log_group(logGroupName=group)
        seen.update(stack=check.stack, suffix=check.world.suffix, resources=check.resources,
                    made=stack_left(check.stack, check.world.suffix))
        raise CheckFailed("the playbook failed (made to, by this test)")

    monkeypatch.setattr(awscheck.Check, "converge", converge_fails)
    code = awscheck.main(["--yes", "--workdir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "aws-check: FAILED: the playbook failed (made to, by this test)" in err
    stack = seen["stack"]
    # Everything was there when the step failed (the log groups this test made included) ...
    assert all(seen["made"].values()), seen["made"]
    # ... and nothing of it is now, the log groups included; another function's log group is untouched.
    assert stack_left(stack, seen["suffix"]) == {kind: [] for kind in seen["made"]}
    assert [g["logGroupName"] for g in boto3.client("logs").describe_log_groups()["logGroups"]] == [
        "/aws/lambda/someone-elses-function"]
    assert f"log groups removed: /aws/lambda/{stack}-start, /aws/lambda/{stack}-stop" in out
    # How to remove it by hand was said before anything was made, in case the run is cut off.
    assert out.find("Should this run be cut off before it can remove it") < out.find("provision up --yes")
    # The check's own look (plan and log groups) saw all of it before `down`, and none of it after.
    cleanup = json.loads((tmp_path / "cleanup.json").read_text())
    assert {"instance", "bucket", "lambda.start", "iam.instance_role", "network.vpc"} <= seen["resources"]
    assert cleanup == {"before": sorted(seen["resources"]) + sorted(seen["made"]["log_group"]), "after": []}


def test_the_local_world_writes_each_invocations_output_to_the_functions_log_group(moto: Any, tmp_path: Path) -> None:
    world = LocalWorld(tmp_path, "-check-0a1b2c", REGION)
    world.write_function_log("stcheck-0a1b2c-start", '{"step": "calendar"}\n\n{"step": "start"}\n')
    world.write_function_log("stcheck-0a1b2c-start", '{"step": "calendar"}\n')
    logs = boto3.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/lambda/stcheck-0a1b2c-start")["logStreams"]
    assert len(streams) == 2  # one per invocation, as Lambda writes them
    events = [e["message"] for s in streams for e in logs.get_log_events(
        logGroupName="/aws/lambda/stcheck-0a1b2c-start", logStreamName=s["logStreamName"])["events"]]
    assert sorted(events) == ['{"step": "calendar"}', '{"step": "calendar"}', '{"step": "start"}']
    assert world.log_groups("stcheck-0a1b2c") == ["/aws/lambda/stcheck-0a1b2c-start"]
    # The stop function never ran: it has no log group, and removing the stack's removes what there is.
    assert world.remove_log_groups("stcheck-0a1b2c") == ["/aws/lambda/stcheck-0a1b2c-start"]
    assert world.log_groups("stcheck-0a1b2c") == []


def test_nothing_is_made_when_this_machine_cannot_reach_the_host(
        moto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    plugin_on_path(tmp_path, monkeypatch, present=False)
    monkeypatch.setattr(awscheck, "too_close_to_midnight", lambda *_a, **_k: None)
    assert awscheck.main(["--yes", "--workdir", str(tmp_path / "work")]) == 1
    out, err = capsys.readouterr()
    assert "this machine cannot reach the host yet, so nothing was created" in err
    assert "session manager: session-manager-plugin is not installed" in err
    assert "provision up" not in out
    stacks = {t["Value"] for v in boto3.client("ec2", region_name=REGION).describe_vpcs()["Vpcs"]
              for t in v.get("Tags", []) if t["Key"] == "Stack"}
    assert not any(name.startswith("stcheck-") for name in stacks)


def test_an_interrupted_removal_still_says_how_to_finish_it(
        moto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    plugin_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(awscheck, "too_close_to_midnight", lambda *_a, **_k: None)

    def up(check: awscheck.Check) -> None:
        check.created = True

    def down(check: awscheck.Check) -> None:
        raise KeyboardInterrupt  # a second Ctrl-C, or the terminal closing, while it removes the stack

    def converge(check: awscheck.Check) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(awscheck.Check, "announce", lambda _check, ask: True)  # its plan: the failed-step test
    monkeypatch.setattr(awscheck.Check, "up", up)
    monkeypatch.setattr(awscheck.Check, "converge", converge)
    monkeypatch.setattr(awscheck.Check, "down", down)
    assert awscheck.main(["--yes", "--workdir", str(tmp_path / "work")]) == 130
    _out, err = capsys.readouterr()
    assert "aws-check: interrupted; removing what it made" in err
    assert "could not remove stack stcheck-" in err and "Remove it with: ST_STACK_CONFIG=" in err
    assert "python -m provision down --yes --delete-bucket --force --release-ip" in err


@pytest.mark.parametrize("utc", [f"2026-12-01T{hour:02d}:{minute:02d}" for hour in range(24) for minute in (5, 35)])
def test_the_throwaway_stacks_schedule_fires_nowhere_near_the_run(tmp_path: Path, utc: str) -> None:
    from provision import config

    now = dt.datetime.fromisoformat(utc).replace(tzinfo=dt.timezone.utc)
    path, cfg = throwaway.throwaway_config(tmp_path, "ssm", "0a1b2c", now=now)
    checked = config.load(path, env={})  # a valid config: the jobs inside the window, at minutes of their own
    local = now.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    at = local.hour * 60 + local.minute
    times = [checked.schedule.start, checked.schedule.stop] + [job.time for job in checked.cron_jobs]
    for hhmm in times:
        hour, minute = (int(x) for x in hhmm.split(":"))
        assert (hour * 60 + minute - at) % 1440 >= 3 * 60, (utc, hhmm)  # not within three hours of the start
    assert [job["name"] for job in cfg["cron_jobs"]] == ["pre-market-setup", "trading"]


def test_it_does_not_start_a_run_that_would_cross_midnight_at_the_exchange(tmp_path: Path) -> None:
    _path, cfg = throwaway.throwaway_config(tmp_path, "ssm", "0a1b2c")
    late = dt.datetime(2026, 12, 1, 17, 30, tzinfo=dt.timezone.utc)  # 23:00 in Asia/Kolkata
    why = throwaway.too_close_to_midnight(cfg, 75, now=late)
    assert why is not None and "23:00 in Asia/Kolkata" in why and "in 60 minutes" in why
    assert throwaway.too_close_to_midnight(cfg, 75, now=late - dt.timedelta(minutes=20)) is None
    assert throwaway.too_close_to_midnight(cfg, 0, now=late + dt.timedelta(minutes=59)) is None  # the local world


def test_the_throwaway_stack_has_no_special_session_to_fire(tmp_path: Path) -> None:
    """A session that keeps the weekly hours would hold its jobs outside the moved window, and one today would
    start or stop the check's host in the middle of it."""
    import yaml

    from provision import config

    raw = yaml.safe_load((throwaway.ROOT / "stack.yml").read_text())
    raw["calendar"]["special_sessions"] = [
        {"date": "2026-12-05", "name": "Budget day", "jobs": {"trading": "09:20"}},
        {"date": "2026-12-01", "name": "Today's session", "start": "17:45", "stop": "19:30"}]
    source = tmp_path / "stack.yml"
    source.write_text(yaml.safe_dump(raw))
    path, cfg = throwaway.throwaway_config(tmp_path, "ssm", "0a1b2c", source=source,
                                          now=dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc))
    assert cfg["calendar"]["special_sessions"] == []
    config.load(path, env={})  # valid


def test_as_many_jobs_as_the_window_holds_and_no_more() -> None:
    now = dt.datetime(2026, 12, 1, 10, 0)
    start, stop, times = throwaway.quiet_schedule(now, 50)
    assert len(set(times)) == 50 and all(start < t < stop for t in times)
    with pytest.raises(CheckFailed, match="cron jobs"):
        throwaway.quiet_schedule(now, 60)


class Gone:
    """A terminal that has hung up: every write fails."""

    def write(self, _text: str) -> int:
        raise OSError(5, "Input/output error")

    def flush(self) -> None:
        raise OSError(5, "Input/output error")


def test_a_closed_terminal_still_removes_the_stack(
        moto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(awscheck, "too_close_to_midnight", lambda *_a, **_k: None)
    removed: list[str] = []
    before = signal.getsignal(signal.SIGTERM)

    def up(check: awscheck.Check) -> None:
        check.created = True

    def converge(check: awscheck.Check) -> None:
        monkeypatch.setattr("sys.stdout", Gone())
        monkeypatch.setattr("sys.stderr", Gone())
        # The terminal closes: SIGHUP, as the kernel sends it, in the middle of a step.
        signal.raise_signal(signal.SIGHUP)

    def down(check: awscheck.Check) -> None:
        check.echo("removing")
        signal.raise_signal(signal.SIGTERM)  # a second signal while it removes the stack is ignored
        removed.append(check.stack)

    monkeypatch.setattr(awscheck.Check, "announce", lambda _check, ask: True)  # its plan: the failed-step test
    monkeypatch.setattr(awscheck.Check, "up", up)
    monkeypatch.setattr(awscheck.Check, "converge", converge)
    monkeypatch.setattr(awscheck.Check, "down", down)
    work = tmp_path / "work"
    hangup = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal (this run may be under nohup)
    try:
        assert awscheck.main(["--yes", "--workdir", str(work)]) == 130
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # put back as it was
    finally:
        signal.signal(signal.SIGHUP, hangup)
    assert removed and removed[0].startswith("stcheck-")
    log = (work / "check.log").read_text()
    assert "aws-check: interrupted; removing what it made" in log and "removing" in log
    assert signal.getsignal(signal.SIGTERM) is before  # put back as it was


def test_a_run_under_nohup_is_not_cut_off_by_the_hangup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signal, "getsignal", lambda number: signal.SIG_IGN if number == signal.SIGHUP else None)
    installed: dict[int, Any] = {}
    monkeypatch.setattr(signal, "signal", lambda number, handler: installed.__setitem__(number, handler))
    awscheck._interruptible()
    assert signal.SIGHUP not in installed and installed[signal.SIGTERM] is awscheck._interrupted


def test_an_interrupted_teardown_is_said_not_thrown(
        moto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    plugin_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(awscheck, "too_close_to_midnight", lambda *_a, **_k: None)
    removed: list[str] = []

    def up(check: awscheck.Check) -> None:
        check.created = True

    def converge(check: awscheck.Check) -> None:
        raise KeyboardInterrupt

    def teardown(world: AwsWorld) -> None:
        raise KeyboardInterrupt  # a second Ctrl-C after the stack is gone

    monkeypatch.setattr(awscheck.Check, "announce", lambda _check, ask: True)  # its plan: the failed-step test
    monkeypatch.setattr(awscheck.Check, "up", up)
    monkeypatch.setattr(awscheck.Check, "converge", converge)
    monkeypatch.setattr(awscheck.Check, "down", lambda check: removed.append(check.stack))
    monkeypatch.setattr(AwsWorld, "teardown", teardown)
    assert awscheck.main(["--yes", "--workdir", str(tmp_path / "work")]) == 130
    _out, err = capsys.readouterr()
    assert removed and "aws-check: interrupted at the very end, after the stack's removal above" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("failure, said", [
    (subprocess.TimeoutExpired(["python", "-m", "provision", "up"], 3600), "python -m provision up ... did not end "
                                                                           "within 3600s"),
    (json.JSONDecodeError("Expecting value", "", 0), "a step's output could not be read: Expecting value"),
])
def test_a_step_that_times_out_or_answers_garbage_fails_in_a_line_and_removes_the_stack(
        moto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        failure: Exception, said: str) -> None:
    plugin_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(awscheck, "too_close_to_midnight", lambda *_a, **_k: None)
    removed: list[str] = []

    def up(check: awscheck.Check) -> None:
        check.created = True
        raise failure

    monkeypatch.setattr(awscheck.Check, "announce", lambda _check, ask: True)
    monkeypatch.setattr(awscheck.Check, "up", up)
    monkeypatch.setattr(awscheck.Check, "down", lambda check: removed.append(check.stack))
    assert awscheck.main(["--yes", "--workdir", str(tmp_path / "work")]) == 1
    _out, err = capsys.readouterr()
    assert f"aws-check: FAILED: {said}" in err and removed


def test_an_interrupt_before_anything_is_made_says_so(
        moto: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    plugin_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(awscheck, "too_close_to_midnight", lambda *_a, **_k: None)

    def announce(check: awscheck.Check, ask: bool) -> bool:
        raise KeyboardInterrupt  # Ctrl-C at the question

    monkeypatch.setattr(awscheck.Check, "announce", announce)
    assert awscheck.main(["--workdir", str(tmp_path / "work")]) == 130
    _out, err = capsys.readouterr()
    assert "aws-check: interrupted; nothing was made" in err
