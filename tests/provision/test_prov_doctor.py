"""`provision doctor`, the hints of plan/up, and the Session Manager tunnel (with a stand-in plugin).

The emulator has no Session Manager: StartSession is answered by a botocore
hook, and a small script stands in for AWS's session-manager-plugin.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import yaml
from provhelpers import Runner, respond_once, write_config

from provision import access

SESSION = {"SessionId": "operator-0a1b2c", "TokenValue": "tok-SECRET-token-value", "StreamUrl": "wss://ssm/x"}


def fake_plugin(where: Path, version: str = "1.2.707.0") -> Path:
    where.mkdir(exist_ok=True)
    plugin = where / access.PLUGIN
    plugin.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo {version}\n")
    plugin.chmod(0o755)
    return plugin


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH with the project's tools (ansible-playbook) and nothing else of note."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    return bin_dir


def key(tmp_path: Path, mode: int) -> Path:
    pem = tmp_path / "simpletrader-key.pem"
    pem.write_text("not a real key\n")
    pem.chmod(mode)
    return pem


def test_doctor_all_in_place(run: Runner, tools: Path, tmp_path: Path) -> None:
    assert run("up", "--yes").code == 0
    fake_plugin(tools)
    key(tmp_path, 0o400)
    result = run("doctor")
    assert result.code == 0, result.out
    lines = result.out.splitlines()
    assert lines[0] == "doctor: stack simpletrader (ap-south-1), network.access ssm"
    assert [ln.split()[0] for ln in lines[1:-1]] == ["ok"] * (len(lines) - 2)
    assert any("session-manager-plugin 1.2.707.0" in ln for ln in lines)
    assert any("amazon.aws" in ln and "community.general" in ln for ln in lines)
    assert any(ln.split()[:2] == ["ok", "ssh"] for ln in lines)
    assert lines[-1] == "Everything needed to operate the stack from here is in place."


def failed_lines(out: str) -> dict[str, str]:
    return {ln.split()[1]: ln for ln in out.splitlines() if ln.strip().startswith("FAIL")}


def test_doctor_says_how_to_fix_each_missing_prerequisite(run: Runner, tools: Path, tmp_path: Path) -> None:
    assert run("up", "--yes").code == 0
    key(tmp_path, 0o644)
    boto3.client("ec2").stop_instances(
        InstanceIds=[boto3.client("ec2").describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]])
    result = run("doctor")
    assert result.code == 1
    failed = failed_lines(result.out)
    assert "install-plugin" in failed["session"] and "or set network.access: ssh" in failed["session"]
    assert "chmod 400" in failed["key"]
    assert any(ln.strip().startswith("note") and "is stopped" in ln and "provision start --wait-ready" in ln
               for ln in result.out.splitlines())
    assert result.out.splitlines()[-1].startswith("2 problems;")


def test_doctor_in_ssh_mode_checks_this_machines_address(run: Runner, tools: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(run.config.read_text())
    raw["network"].update(access="ssh", ssh_ingress=["203.0.113.0/24"])
    write_config(run.config, raw)
    key(tmp_path, 0o600)
    assert run("up", "--yes").code == 0
    known = tmp_path / "known_hosts"
    run.options = {"public_ip_lookup": lambda: "13.233.197.98/32", "known_hosts": str(known)}
    result = run("doctor")
    assert result.code == 1
    assert "your address 13.233.197.98/32 is not in network.ssh_ingress" in result.out
    assert "session" not in result.out  # no plugin needed without Session Manager
    # A host SSH has never seen: Ansible's Mitogen strategy would refuse it, so doctor says how to accept it.
    [host_key] = [ln for ln in result.out.splitlines() if " host key " in ln]
    ip = json.loads(run("outputs", "--json").out)["public_ip"]
    assert host_key.split()[0] == "FAIL" and f"{ip} is not in {known}" in host_key
    assert f"ssh -i simpletrader-key.pem -o StrictHostKeyChecking=ask ec2-user@{ip} true" in host_key
    known.write_text(f"{ip} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEhBxQLQ5z0SFcSbO6j1PuYsZxHz1bCwBG5ZlEX3W7gd\n")
    run.options = {"public_ip_lookup": lambda: "203.0.113.9/32", "known_hosts": str(known)}
    result = run("doctor")
    assert result.code == 0, result.out
    assert any(ln.split()[:3] == ["ok", "host", "key"] for ln in result.out.splitlines())
    # The host is looked up once for both of its checks (state, and the address whose key SSH knows).
    assert run.last_recorder is not None
    assert [op for _, _, op in run.last_recorder.calls].count("DescribeInstances") == 1


def test_doctor_refuses_a_python_older_than_3_11(run: Runner, tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugin(tools)
    monkeypatch.setattr(sys, "version_info", (3, 10, 12, "final", 0))
    result = run("doctor")
    assert result.code == 1
    python = failed_lines(result.out)["python"]
    assert "3.10.12 is too old" in python and "PYTHON=python3.11 make setup" in python
    # plan says so too, before anything is made
    [hint] = [ln for ln in run("plan").err.splitlines() if ln.startswith("hint:")]
    assert hint.startswith("hint: python: 3.10.12 is too old")


@pytest.mark.parametrize("missing", ["amazon.aws", "community.general"])
def test_doctor_names_a_missing_collection_and_what_needs_it(run: Runner, tools: Path, missing: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    fake_plugin(tools)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == f"ansible_collections.{missing}" else find_spec(name, *a))
    result = run("doctor")
    assert result.code == 1
    ansible = failed_lines(result.out)["ansible"]
    assert f"the collection {missing} (" in ansible and "is missing; `make setup` installs it" in ansible
    assert ("inventory/aws_ec2.yml" if missing == "amazon.aws" else "trader_cron") in ansible


def test_doctor_without_an_ssh_client_says_how_to_install_one(run: Runner, tools: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugin(tools)
    # The project's tools (ansible-playbook) and the stand-in plugin, but no ssh.
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{Path(sys.executable).parent}")
    result = run("doctor")
    assert result.code == 1
    ssh = failed_lines(result.out)["ssh"]
    assert "no ssh client on PATH" in ssh and "apt-get install openssh-client" in ssh
    assert "dnf install openssh-clients" in ssh


def test_doctor_without_credentials_says_how_to_configure_them(run: Runner, tools: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugin(tools)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = run("doctor")
    assert result.code == 1
    credentials = failed_lines(result.out)["credentials"]
    assert "Unable to locate credentials" in credentials
    assert "aws configure, AWS_PROFILE=..., or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in credentials
    # Nothing that needs AWS is tried without them.
    assert not any(ln.split()[1] in ("host", "key") for ln in result.out.splitlines()[1:-1])
    assert result.out.splitlines()[-1].startswith("1 problem;")


def test_doctor_with_credentials_aws_refuses_says_so(run: Runner, tools: Path, moto: Any) -> None:
    fake_plugin(tools)
    with moto.iam_enforced():  # the emulator now refuses keys it did not issue, as AWS refuses bad ones
        result = run("doctor")
    assert result.code == 1
    credentials = failed_lines(result.out)["credentials"]
    assert "InvalidClientTokenId" in credentials and "aws configure" in credentials


def test_plan_and_up_hint_at_a_missing_plugin(run: Runner, tools: Path) -> None:
    plan = run("plan")
    assert plan.code == 0
    [hint] = [ln for ln in plan.err.splitlines() if ln.startswith("hint:")]
    assert hint.startswith("hint: session manager: session-manager-plugin is not installed")
    assert hint.endswith("(`python -m provision doctor` checks everything)")
    fake_plugin(tools)
    assert not [ln for ln in run("plan").err.splitlines() if ln.startswith("hint:")]


# --------------------------------------------------------------------------- the tunnel


class Became(Exception):
    """What the fake exec raises instead of replacing the process."""

    def __init__(self, path: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(path)
        self.path, self.argv, self.env = path, argv, env


def fake_exec(path: str, argv: list[str], env: Any) -> None:
    raise Became(path, list(argv), dict(env))


def start_session_answers(status: int, body: dict[str, Any]) -> Any:
    return respond_once("ssm.StartSession", status, {}, json.dumps(body).encode(), times=9)


def test_tunnel_hands_the_session_to_the_plugin_without_showing_the_token(
        run: Runner, tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = fake_plugin(tools)
    monkeypatch.setattr(os, "execve", fake_exec)
    with pytest.raises(Became) as became:
        run("tunnel", "i-0123456789abcdef0", "22", hooks=[("before-send", start_session_answers(200, SESSION))])
    b = became.value
    assert b.path == str(plugin)
    assert b.argv[:5] == [str(plugin), "AWS_SSM_START_SESSION_RESPONSE", "ap-south-1", "StartSession", ""]
    assert json.loads(b.argv[5]) == {"Target": "i-0123456789abcdef0", "DocumentName": "AWS-StartSSHSession",
                                     "Parameters": {"portNumber": ["22"]}}
    assert b.argv[6] == os.environ["AWS_ENDPOINT_URL"]
    assert json.loads(b.env["AWS_SSM_START_SESSION_RESPONSE"]) == SESSION
    assert not any(SESSION["TokenValue"] in a for a in b.argv)  # not in the process list


def test_tunnel_with_an_old_plugin_passes_the_session_as_its_argument(
        run: Runner, tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugin(tools, version="1.2.463.0")
    monkeypatch.setattr(os, "execve", fake_exec)
    with pytest.raises(Became) as became:
        run("tunnel", "i-0123456789abcdef0", hooks=[("before-send", start_session_answers(200, SESSION))])
    assert json.loads(became.value.argv[1]) == SESSION


def test_tunnel_without_the_plugin_starts_no_session(run: Runner, tools: Path) -> None:
    result = run("tunnel", "i-0123456789abcdef0")
    assert result.code == 1
    assert "session-manager-plugin is not installed" in result.err and "install-plugin" in result.err
    assert run.last_recorder is not None
    assert [c[2] for c in run.last_recorder.calls] == []


def test_tunnel_to_a_stopped_host_says_how_to_start_it(run: Runner, tools: Path) -> None:
    assert run("up", "--yes").code == 0
    ec2 = boto3.client("ec2")
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance])
    fake_plugin(tools)
    refused = start_session_answers(400, {"__type": "TargetNotConnected", "message": f"{instance} is not connected."})
    result = run("tunnel", "--region", "ap-south-1", instance, hooks=[("before-send", refused)])
    assert result.code == 1
    assert result.err.strip() == (f"error: host {instance} is stopped: start it with "
                                  "`python -m provision start --wait-ready`, then connect again")



def test_tunnel_to_a_running_host_waits_a_moment_for_its_agent(
        run: Runner, tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent reports Online a moment before Session Manager can reach it: the first converge after
    `start --wait-ready` must not fail on that moment."""
    assert run("up", "--yes").code == 0
    instance = boto3.client("ec2").describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]
    fake_plugin(tools)
    monkeypatch.setattr(os, "execve", fake_exec)
    not_yet = respond_once("ssm.StartSession", 400, {}, json.dumps(
        {"__type": "TargetNotConnected", "message": f"{instance} is not connected."}).encode(), times=2)
    with pytest.raises(Became):
        run("tunnel", instance, hooks=[("before-send", not_yet), ("before-send", start_session_answers(200, SESSION))])
    assert not_yet.seen["n"] == 2  # asked again, then the session started

    never = start_session_answers(400, {"__type": "TargetNotConnected", "message": f"{instance} is not connected."})
    result = run("tunnel", instance, hooks=[("before-send", never)])
    assert result.code == 1
    assert "is running but its SSM agent is not connected to Session Manager yet" in result.err
    assert never.seen["n"] == 1 + int(access.TARGET_WAIT_SECONDS / access.TARGET_POLL_SECONDS)

    # Slow answers count against the wait too: 10 s pass with each call here.
    ticks = iter(range(0, 1000, 10))
    monkeypatch.setattr(access, "time", SimpleNamespace(monotonic=lambda: float(next(ticks)), sleep=lambda _s: None))
    slow = start_session_answers(400, {"__type": "TargetNotConnected", "message": f"{instance} is not connected."})
    assert run("tunnel", instance, hooks=[("before-send", slow)]).code == 1
    assert slow.seen["n"] == 2


def test_tunnel_to_a_host_whose_state_cannot_be_read_does_not_call_it_running(run: Runner, tools: Path) -> None:
    fake_plugin(tools)
    gone = "i-0123456789abcdef0"  # no such instance: DescribeInstances refuses it
    refused = start_session_answers(400, {"__type": "TargetNotConnected", "message": f"{gone} is not connected."})
    result = run("tunnel", "--region", "ap-south-1", gone, hooks=[("before-send", refused)])
    assert result.code == 1
    assert f"host {gone} could not be looked up, and its SSM agent is not connected" in result.err
    assert refused.seen["n"] == 1  # not asked again: only a running host is waited for

def test_the_tunnel_script_runs_the_tunnel_command(tools: Path) -> None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([str(root / access.TUNNEL_SCRIPT), "--help"], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert "INSTANCE_ID" in proc.stdout and "--region" in proc.stdout
    mode = (root / access.TUNNEL_SCRIPT).stat().st_mode
    assert mode & stat.S_IXUSR
