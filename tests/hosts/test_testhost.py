"""The test host stands in for an EC2 instance: SSH as ec2-user with sudo,
Python 3.9, Ansible over SSH, apt through the proxy; and `down` leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTHOST = ROOT / "tests" / "hosts" / "testhost"
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.root, pytest.mark.testhost]


def run_testhost(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TESTHOST), *args], text=True, capture_output=True, check=check, timeout=600)


def foreign_pid_namespace_processes() -> set[tuple[int, str]]:
    """Processes living in another pid namespace than ours (a container's)."""
    mine = os.readlink("/proc/self/ns/pid")
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "ns/pid") != mine:
                found.add((int(proc.name), (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]))
        except OSError:
            continue
    return found


def traces(name: str, data: dict[str, object]) -> dict[str, object]:
    """What host ``name`` leaves on this machine: its namespace, veth, mounts, container processes.

    Only this host's own: other test hosts may come and go meanwhile (the suite runs in parallel).
    """
    veth = f"stth{data['index']}"
    netns = [ln for ln in subprocess.run(["ip", "netns", "list"], text=True, capture_output=True).stdout.splitlines()
             if ln.split()[:1] == [data["netns"]]]
    links = [ln for ln in subprocess.run(["ip", "-o", "link", "show"], text=True, capture_output=True).stdout
             .splitlines() if f" {veth}@" in ln or f" {veth}:" in ln]
    mounts = [ln for ln in Path("/proc/mounts").read_text().splitlines() if str(data["dir"]) in ln]
    procs = {p for p in foreign_pid_namespace_processes() if f"--machine={name}" in p[1] or str(data["dir"]) in p[1]}
    return {"netns": netns, "links": links, "mounts": mounts, "processes": procs}


def test_host_boots_serves_ssh_ansible_and_leaves_nothing_behind(tmp_path: Path) -> None:
    name = "pytest-host"
    run_testhost("down", name, check=False)
    run_testhost("proxy")  # a shared service that outlives hosts

    data = json.loads(run_testhost("up", name).stdout)
    try:
        up = traces(name, data)
        assert up["netns"] and up["links"] and up["mounts"], up  # the probe sees a running host's traces
        assert data["ip"].startswith("10.231.")
        probe = "id -un; sudo -n id -un; python3 -c 'import sys; print(sys.version_info[:2])'"
        out = run_testhost("ssh", name, "--", probe)
        assert out.stdout.split("\n")[:3] == ["ec2-user", "root", "(3, 9)"]
        # No cron and no python3.9 venv support: the roles must install them.
        probe = run_testhost("ssh", name, "--", "test -e /usr/sbin/cron || python3 -m ensurepip --version", check=False)
        assert probe.returncode != 0

        inventory = tmp_path / "hosts.yml"
        inventory.write_text(json.dumps({"all": {"hosts": {name: {
            "ansible_host": data["ip"], "ansible_user": "ec2-user",
            "ansible_ssh_private_key_file": data["key"],
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }}}}))
        env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False", PATH=f"{BIN}:{os.environ['PATH']}")
        ping = subprocess.run([str(BIN / "ansible"), "-i", str(inventory), name, "-m", "ansible.builtin.ping"],
                              text=True, capture_output=True, env=env, timeout=300)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert '"ping": "pong"' in ping.stdout

        change = [str(BIN / "ansible"), "-i", str(inventory), name, "-b", "-m", "ansible.builtin.copy",
                  "-a", "dest=/etc/pytest-marker content=hello mode=0600"]
        first = subprocess.run(change, text=True, capture_output=True, env=env, timeout=300)
        assert first.returncode == 0 and "CHANGED" in first.stdout, first.stdout + first.stderr
        second = subprocess.run(change, text=True, capture_output=True, env=env, timeout=300)
        assert second.returncode == 0 and "CHANGED" not in second.stdout, second.stdout
        assert run_testhost("ssh", name, "--", "sudo stat -c '%a %s' /etc/pytest-marker").stdout.strip() == "600 5"

        # apt inside the host goes through the proxy on this side of the veth.
        apt = run_testhost("ssh", name, "--", "sudo apt-get update -qq && apt-cache policy sudo | head -2", check=False)
        assert apt.returncode == 0, apt.stdout + apt.stderr

        # `up` again reuses the running host (its changes stay); `up --fresh` boots a clean one.
        again = json.loads(run_testhost("up", name).stdout)
        assert again["pid"] == data["pid"]
        assert run_testhost("ssh", name, "--", "test -e /etc/pytest-marker", check=False).returncode == 0
        data = json.loads(run_testhost("up", name, "--fresh").stdout)
        assert data["pid"] != again["pid"]
        assert run_testhost("ssh", name, "--", "test -e /etc/pytest-marker", check=False).returncode == 1
    finally:
        run_testhost("down", name)

    assert traces(name, data) == {"netns": [], "links": [], "mounts": [], "processes": set()}
    assert run_testhost("info", name, check=False).returncode != 0


def test_ssh_to_a_host_that_is_not_up_says_so() -> None:
    out = run_testhost("ssh", "no-such-host", "--", "true", check=False)
    assert out.returncode == 1
    assert "not up" in out.stderr


def test_bad_host_name_is_refused() -> None:
    out = run_testhost("up", "bad_name!", check=False)
    assert out.returncode == 1
    assert "bad host name" in out.stderr
