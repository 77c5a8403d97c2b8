"""`ansible-playbook site.yml` from the repository root, against the emulator: a stopped host or no host
stops the run with the reason and the command that helps, not "no hosts matched" and exit 0."""

from __future__ import annotations

import subprocess
from typing import Any

import boto3
import pytest

from tests.ansible.helpers_ansible import ROOT, tool, tool_env
from tests.ansible.test_ansible_inventory import host_tags, run_instance


def playbook(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("ansible-playbook"), name], cwd=ROOT, env=tool_env(), capture_output=True,
                          text=True, timeout=180)


@pytest.mark.parametrize("name", ["site.yml", "playbooks/sync.yml"])
def test_a_stopped_host_fails_the_run_and_says_how_to_start_it(moto: Any, name: str) -> None:
    ec2 = boto3.client("ec2")
    instance = run_instance(ec2, host_tags())
    ec2.stop_instances(InstanceIds=[instance])
    proc = playbook(name)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"simpletrader-host ({instance}) is stopped" in out
    assert "python -m provision start --wait-ready" in out
    assert "no hosts matched" not in out


def test_no_host_fails_the_run_and_says_how_to_make_it(moto: Any) -> None:
    proc = playbook("site.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "stack simpletrader in ap-south-1 has none (`python -m provision up` creates it" in out


def test_site_yml_at_the_root_is_the_playbook(moto: Any) -> None:
    proc = subprocess.run([tool("ansible-playbook"), "site.yml", "--list-tasks"], cwd=ROOT,
                          env=tool_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for play in ("Read the stack config and check the trading host is there and running",
                 "Configure the SimpleTrader trading host"):
        assert play in proc.stdout


def test_an_unreadable_inventory_stops_the_run_with_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    proc = playbook("site.yml")
    assert proc.returncode != 0
    assert "Unable to locate credentials" in proc.stdout + proc.stderr
