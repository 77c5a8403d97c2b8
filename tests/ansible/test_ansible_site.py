"""playbooks/site.yml and sync.yml on a Debian 11 test host, as an operator runs them.

One fresh host: site.yml converges it from the stack config, a second run
changes nothing, sync.yml syncs the example release from the emulator, the
pre-market cron job's own command line then runs the example code on the
synced workspace, and site.yml still changes nothing after all that. The
roles' molecule scenarios test each part in depth; this proves they fit
together (paths, lock, ready marker, interpreter).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from devtools import localaws
from provision.publish import publish
from provision.wheelhouse import build_wheelhouse
from tests.ansible.helpers_ansible import ROOT, WHEEL_CACHE, control_path_dir, tool, tool_env, tool_wheelhouse

pytestmark = [pytest.mark.root, pytest.mark.testhost, pytest.mark.xdist_group("site-host")]  # one host

TESTHOST = os.environ.get("ST_TESTHOST", str(ROOT / "tests" / "hosts" / "testhost"))
HOST = "site-deb11"
SUFFIX = "-sitetest"
STACK = yaml.safe_load((ROOT / "stack.yml").read_text())
BUCKET = STACK["bucket"]["name"] + SUFFIX
EXAMPLE = ROOT / "example"


def run_testhost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TESTHOST, *args], capture_output=True, text=True, timeout=600, check=True)


def on_host(command: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command on the host as ec2-user (sudo for root)."""
    return subprocess.run([TESTHOST, "ssh", HOST, "--", command], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def host() -> Iterator[dict[str, Any]]:
    run_testhost("down", HOST)
    info = json.loads(run_testhost("up", HOST).stdout)
    try:
        yield info
    finally:
        run_testhost("down", HOST)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localaws.MotoServer]:
    log = tmp_path_factory.mktemp("moto-site") / "moto.log"
    server = localaws.start(bind="0.0.0.0", log_path=log)  # noqa: S104 - the test host reaches it
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def inventory(host: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same shape the e2e gives the aws_ec2 inventory host through host_vars.
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(yaml.safe_dump({"trading_hosts": {"hosts": {HOST: {
        "ansible_host": host["ip"],
        "ansible_user": host["user"],
        "ansible_ssh_private_key_file": host["key"],
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
        "ansible_ssh_host_key_checking": False,  # a throwaway host (Mitogen reads this, not the ssh options)
    }}}}))
    return path


def playbook(inventory: Path, name: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("ansible-playbook"), "-i", str(inventory), f"playbooks/{name}",
         "-e", f"workspace_sync_tool_wheelhouse={tool_wheelhouse()}", *extra],
        cwd=ROOT, env=tool_env(s3_bucket_suffix=SUFFIX, ANSIBLE_CACHE_PLUGIN="memory", **env),
        capture_output=True, text=True, timeout=900,
    )


def recap(output: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(HOST)}\s*:\s*(.*)$", output, re.MULTILINE)
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_site_then_sync_then_the_cron_job(host: dict[str, Any], inventory: Path,
                                          emulator: localaws.MotoServer) -> None:
    endpoint = emulator.endpoint_for(host["gateway"])
    first = playbook(inventory, "site.yml", "-e", f"workspace_sync_endpoint_url={endpoint}")
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-3000:]
    assert recap(first.stdout)["failed"] == 0

    # A no-change run uses Mitogen only (the long steps on Ansible's SSH plugin are skipped): the
    # SSH master it leaves in Ansible's control directory, made by the run, is Mitogen's.
    control_dir = control_path_dir() / "new"
    second = playbook(inventory, "site.yml", "-e", f"workspace_sync_endpoint_url={endpoint}",
                      ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir))
    assert second.returncode == 0, second.stdout[-5000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-5000:]
    assert [p for p in control_dir.iterdir() if stat.S_ISSOCK(p.stat().st_mode)], "Mitogen kept no SSH master"

    # The stack config reached the host: bucket with the suffix, region, jobs.
    config = json.loads(on_host("sudo cat /etc/simpletrader/workspace.json").stdout)
    assert config["bucket"] == BUCKET
    assert config["region"] == STACK["stack"]["region"]
    assert config["endpoint_url"] == endpoint
    crontab = on_host("crontab -l").stdout
    for job in STACK["cron_jobs"]:
        hour, minute = job["time"].split(":")
        entry = rf"^{int(minute)} {int(hour)} \* \* 1,2,3,4,5 flock -n .* {job['name']} {job['script']} "
        assert re.search(entry, crontab, re.MULTILINE), crontab

    # Publish the example release and sync it with the playbook (root gets
    # fake credentials: the instance role's stand-in).
    s3 = boto3.client("s3", endpoint_url=emulator.endpoint, region_name="ap-south-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    wheels = WHEEL_CACHE / "example-py39-site"
    if not any(wheels.glob("*.whl")):
        build_wheelhouse(EXAMPLE / "simpletrader" / "requirements.txt", wheels, log=lambda _m: None)
    publish(s3, bucket=BUCKET, prefixes=STACK["bucket"]["prefixes"], code_dir=EXAMPLE / "simpletrader",
            requirements=EXAMPLE / "simpletrader" / "requirements.txt",
            keys_file=EXAMPLE / "secrets" / "keys.json", token_file=EXAMPLE / "secrets" / "access_token.txt",
            wheelhouse=wheels, log=lambda _m: None)
    creds = on_host("sudo install -d -m 0700 /root/.aws && printf '[default]\\naws_access_key_id = testing\\n"
                    "aws_secret_access_key = testing\\n' | sudo tee /root/.aws/credentials >/dev/null")
    assert creds.returncode == 0, creds.stderr
    sync = playbook(inventory, "sync.yml")
    assert sync.returncode == 0, sync.stdout[-5000:]
    assert "sync: ready release=" in sync.stdout

    # The token was published just now; before 06:00 exchange time that is
    # (rightly) stale, so date it 06:30 today to run the job at any hour.
    touch = on_host('TZ=Asia/Kolkata touch -d "$(TZ=Asia/Kolkata date +%F) 06:30" '
                    f"{STACK['host']['workdir']}/access_token.txt")
    assert touch.returncode == 0, touch.stderr
    job = next(j for j in STACK["cron_jobs"] if j["name"] == "pre-market-setup")
    line = next(ln for ln in crontab.splitlines() if f" {job['script']} " in ln)
    command = line.split(" ", 5)[5]
    ran = on_host(f"cd ~ && sh -c {json.dumps(command)}")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    log = on_host("cat /var/lib/simpletrader/logs/pre-market-setup-$(date +%Y-%m-%d).log").stdout
    assert "pre-market: wrote data/historical_context.json" in log, log
    assert "exit 0" in log, log

    # A host that has synced and traded is still converged: nothing to change.
    third = playbook(inventory, "site.yml", "-e", f"workspace_sync_endpoint_url={endpoint}")
    assert third.returncode == 0, third.stdout[-5000:]
    assert recap(third.stdout)["changed"] == 0, third.stdout[-5000:]

    # An install interrupted after the virtualenv was made but before its pip
    # was (a dropped connection, a killed run) is repaired by the next run.
    broken = on_host("sudo sh -c 'rm -rf /opt/simpletrader/venv/bin/pip* "
                     "/opt/simpletrader/venv/lib/python3.9/site-packages/pip* "
                     "/opt/simpletrader/venv/simpletrader-tools.sha256'")
    assert broken.returncode == 0, broken.stderr
    fourth = playbook(inventory, "site.yml", "-e", f"workspace_sync_endpoint_url={endpoint}")
    assert fourth.returncode == 0, fourth.stdout[-5000:]
    assert on_host("/opt/simpletrader/venv/bin/python -m pip --version").returncode == 0
    assert "sync: ready release=" in playbook(inventory, "sync.yml").stdout  # the routine is back in it
