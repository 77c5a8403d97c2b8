"""A new instance's SSH host keys for `make aws-check --access ssh` (devtools/hostkeys.py), and how Ansible uses them.

The console output is built the way cloud-init's write-ssh-key-fingerprints
prints it on Amazon Linux, around keys made here with ssh-keygen (so the
fingerprints are ssh-keygen's own). What only a real account shows (that the
console has them in time, that the host offers those keys) is listed in
docs/TESTING.md.
"""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools import hostkeys
from devtools.hostkeys import HostKey
from devtools.worlds import AwsWorld, CheckFailed

ROOT = Path(__file__).resolve().parent.parent
IP, INSTANCE = "203.0.113.7", "i-0123456789abcdef0"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEhBxQLQ5z0SFcSbO6j1PuYsZxHz1bCwBG5ZlEX3W7gd"


def host_keys(where: Path) -> list[tuple[HostKey, str]]:
    """Host keys as sshd's would be (ECDSA, ED25519), each with the fingerprint line `ssh-keygen -l` prints."""
    found = []
    for kind in ("ecdsa", "ed25519"):
        path = where / f"ssh_host_{kind}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True)
        ktype, blob = path.with_suffix(".pub").read_text().split()[:2]
        line = subprocess.run(["ssh-keygen", "-l", "-f", f"{path}.pub"], capture_output=True, text=True,
                              check=True).stdout.strip()
        found.append((HostKey(ktype, blob), line))
    return found


def console(keys: list[tuple[HostKey, str]], *, with_keys: bool = True) -> str:
    """The tail of an Amazon Linux boot on the serial console (cloud-init's final stage, then a login prompt)."""
    lines = ["[   21.383459] cloud-init[1666]: Cloud-init v. 22.2.2 running 'modules:final'",
             "ec2: ", "ec2: #############################################################",
             "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
             *[f"ec2: {fp}" for _, fp in keys],
             "ec2: -----END SSH HOST KEY FINGERPRINTS-----",
             "ec2: #############################################################"]
    if with_keys:
        lines += ["-----BEGIN SSH HOST KEY KEYS-----", *[f"{k.type} {k.blob} " for k, _ in keys],
                  "-----END SSH HOST KEY KEYS-----"]
    lines += ["[   22.102334] cloud-init[1666]: Cloud-init v. 22.2.2 finished", "",
              "Amazon Linux 2023.6.20250115", "ip-10-0-1-23 login: "]
    return "\r\n".join(lines)


class Ec2:
    """GetConsoleOutput answers, one per call (the last one repeats)."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)
        self.calls: list[dict[str, Any]] = []

    def get_console_output(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        return {"InstanceId": params["InstanceId"], "Output": self.outputs.pop(0) if len(self.outputs) > 1
                else self.outputs[0]}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def no_scan(ip: str) -> list[HostKey]:
    raise AssertionError("ssh-keyscan is not needed when the console printed the keys")


def no_first_contact(*args: Any) -> None:
    raise AssertionError("the keys were not to be accepted on first contact")


def trust(ec2: Ec2, known: Path, clock: Clock | None = None, **kwargs: Any) -> str:
    clock = clock or Clock()
    options: dict[str, Any] = dict(user="ec2-user", key=known.parent / "check-key.pem", sleep=clock.sleep,
                                   clock=clock, keyscan=no_scan, first_contact=no_first_contact)
    options.update(kwargs)
    return hostkeys.trust(ec2, INSTANCE, IP, known, **options)


# --------------------------------------------------------------------------- reading the console


def test_fingerprints_and_keys_are_read_from_cloud_inits_console_output(tmp_path: Path) -> None:
    keys = host_keys(tmp_path)
    text = console(keys)
    assert hostkeys.fingerprints(text) == {fp.split()[1] for _, fp in keys}
    assert hostkeys.keys(text) == [k for k, _ in keys]
    # Our fingerprint of a key is ssh-keygen's.
    assert [k.fingerprint for k, _ in keys] == [fp.split()[1] for _, fp in keys]
    # Nothing is read from a console without the blocks, or with a block cut off by the 64 KB window.
    assert hostkeys.fingerprints("Amazon Linux 2023\r\nlogin: ") == set()
    cut = text[:text.index("-----END SSH HOST KEY FINGERPRINTS-----")]
    assert hostkeys.fingerprints(cut) == set() and hostkeys.keys(cut) == []


# --------------------------------------------------------------------------- trusting the host


def test_keys_the_console_printed_and_fingerprinted_are_written_for_the_hosts_address(tmp_path: Path) -> None:
    keys = host_keys(tmp_path)
    known = tmp_path / "known_hosts"
    ec2 = Ec2(console(keys))
    said = trust(ec2, known)
    assert ec2.calls == [{"InstanceId": INSTANCE, "Latest": True}]
    assert known.read_text() == "".join(f"{IP} {k.type} {k.blob}\n" for k, _ in keys)
    # ssh reads the file: it knows the host by its address, with both keys and their fingerprints.
    found = subprocess.run(["ssh-keygen", "-F", IP, "-f", str(known)], capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.count(f"# Host {IP} found") == 2
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(known)], capture_output=True, text=True, check=True)
    assert sorted(ln.split()[1] for ln in listed.stdout.splitlines()) == sorted(fp.split()[1] for _, fp in keys)
    assert said.startswith(f"host key: 2 key(s) of {IP} from the console output, each matching a fingerprint")
    assert str(known) in said and keys[1][0].fingerprint in said


def test_it_waits_for_the_fingerprints_to_reach_the_console(tmp_path: Path) -> None:
    keys = host_keys(tmp_path)
    clock = Clock()
    booting = console(keys).split("ec2: ")[0]
    trust(Ec2(booting, booting, console(keys)), tmp_path / "known_hosts", clock)
    assert clock.slept == [hostkeys.POLL_SECONDS] * 2
    assert (tmp_path / "known_hosts").exists()


def test_without_printed_keys_the_scanned_ones_are_checked_against_the_fingerprints(tmp_path: Path) -> None:
    keys = host_keys(tmp_path)
    known = tmp_path / "known_hosts"
    (tmp_path / "other").mkdir()
    stranger = host_keys(tmp_path / "other")[1][0]
    scanned: list[str] = []

    def keyscan(ip: str) -> list[HostKey]:
        scanned.append(ip)
        return [stranger, keys[1][0]]  # one key the instance did not print is offered too

    said = trust(Ec2(console(keys, with_keys=False)), known, keyscan=keyscan)
    assert scanned == [IP]
    assert known.read_text() == f"{IP} {keys[1][0].type} {keys[1][0].blob}\n"  # only the fingerprinted key
    assert f"from ssh-keyscan, each matching a fingerprint {INSTANCE} printed at boot" in said


def test_a_host_offering_none_of_the_printed_keys_is_not_trusted(tmp_path: Path) -> None:
    keys = host_keys(tmp_path)
    (tmp_path / "other").mkdir()
    strangers = [k for k, _ in host_keys(tmp_path / "other")]
    known = tmp_path / "known_hosts"
    with pytest.raises(hostkeys.Untrusted, match=f"is one {INSTANCE} printed at boot .*; not trusting it"):
        trust(Ec2(console(keys, with_keys=False)), known, keyscan=lambda ip: strangers)
    assert not known.exists()


def test_without_fingerprints_in_time_the_check_stops_unless_told_to_accept_the_key(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(hostkeys.Untrusted, match="--accept-new-host-key"):
        trust(Ec2("Amazon Linux 2023\r\nlogin: "), known, Clock())
    assert not known.exists()


def test_without_fingerprints_in_time_the_key_is_accepted_on_first_contact_when_told_and_it_says_so(
        tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    clock = Clock()
    contacted: list[tuple[Any, ...]] = []
    said = trust(Ec2("Amazon Linux 2023\r\nlogin: "), known, clock, first_contact=lambda *a: contacted.append(a),
                 accept_unseen=True)
    assert clock.now >= hostkeys.WAIT_SECONDS  # it waited the whole time first
    assert contacted == [(IP, "ec2-user", tmp_path / "check-key.pem", known)]
    assert said.startswith(f"host key: accepted on first contact (ssh accept-new) into {known}")
    assert "showed no SSH host key fingerprints" in said


# --------------------------------------------------------------------------- the ssh commands


@pytest.fixture
def recording_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`ssh` and `ssh-keyscan` on PATH that record their arguments (one per line) instead of connecting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ssh", "ssh-keyscan"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/{tool}.args\n"
                          + (f"echo '# {IP}:22 SSH-2.0-OpenSSH_8.7'\necho '{IP} {ED25519}'\n"
                             if tool == "ssh-keyscan" else ""))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_keyscan_reads_the_keys_the_host_offers(recording_ssh: Path) -> None:
    assert hostkeys.scan(IP) == [HostKey(*ED25519.split())]
    assert (recording_ssh / "ssh-keyscan.args").read_text().splitlines() == ["-T", "10", IP]


def test_first_contact_accepts_a_new_key_into_the_runs_file_only(recording_ssh: Path) -> None:
    known, key = recording_ssh / "known_hosts", recording_ssh / "check-key.pem"
    hostkeys.accept_new(IP, "ec2-user", key, known)
    argv = (recording_ssh / "ssh.args").read_text().splitlines()
    assert argv[-2:] == [f"ec2-user@{IP}", "true"]
    assert ["-i", str(key)] == argv[:2]
    assert "StrictHostKeyChecking=accept-new" in argv and f"UserKnownHostsFile={known}" in argv
    assert "BatchMode=yes" in argv


def test_ansible_under_mitogen_checks_the_host_against_the_runs_known_hosts(tmp_path: Path) -> None:
    """The ssh command Ansible (the project's ansible.cfg, Mitogen's strategy) runs for the host, resolved by ssh."""
    world = AwsWorld(tmp_path, "-check-0a1b2c", "ap-south-1")
    world.known_hosts.write_text(f"{IP} {ED25519}\n")
    env = world.env()
    assert env["ANSIBLE_SSH_EXTRA_ARGS"] == f"-o UserKnownHostsFile={world.known_hosts}"
    recorder = tmp_path / "ssh"
    recorder.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/ansible-ssh.args\nexit 255\n")
    recorder.chmod(0o755)
    env.update(ANSIBLE_SSH_EXECUTABLE=str(recorder), ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp_path / "facts"))
    for name in ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_STRATEGY", "ANSIBLE_CONFIG", "ANSIBLE_SSH_ARGS"):
        env.pop(name, None)
    subprocess.run([str(Path(sys.executable).parent / "ansible"), "all", "-i", f"{IP},", "-u", "ec2-user",
                    "-m", "ansible.builtin.ping", "-e", "ansible_ssh_host_key_checking=true"],
                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    argv = (tmp_path / "ansible-ssh.args").read_text().splitlines()
    options = argv[:argv.index(IP)]
    # Mitogen's "yes" comes ahead of ansible.cfg's accept-new, and ssh takes an option's first value: a key
    # it has not seen is refused. The run's known_hosts is the one it looks in.
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    assert "StrictHostKeyChecking=accept-new" in shlex.split(cfg["ssh_connection"]["ssh_args"])
    assert options.index("StrictHostKeyChecking yes") < options.index("StrictHostKeyChecking=accept-new")
    resolved = subprocess.run(["ssh", "-G", *options, IP], capture_output=True, text=True, check=True).stdout
    settings = dict(line.split(" ", 1) for line in resolved.splitlines() if " " in line)
    assert settings["stricthostkeychecking"] == "true"
    assert settings["userknownhostsfile"] == str(world.known_hosts)


def test_the_aws_world_trusts_the_host_before_ansible_and_refuses_a_stranger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = host_keys(tmp_path)
    world = AwsWorld(tmp_path, "-check-0a1b2c", "ap-south-1")
    asked: list[str] = []
    ec2 = Ec2(console(keys))
    monkeypatch.setattr(world, "client", lambda service: asked.append(service) or ec2)
    assert "ANSIBLE_SSH_EXTRA_ARGS" not in world.env()  # nothing to point at before the host is trusted
    said = world.trust_host(INSTANCE, IP, "ec2-user")
    assert asked == ["ec2"] and said.startswith("host key: 2 key(s)")
    assert world.env()["ANSIBLE_SSH_EXTRA_ARGS"] == f"-o UserKnownHostsFile={tmp_path / 'known_hosts'}"
    (tmp_path / "known_hosts").unlink()
    (tmp_path / "other").mkdir()
    strangers = host_keys(tmp_path / "other")
    ec2.outputs = [console(keys, with_keys=False).replace("-----BEGIN SSH HOST KEY FINGERPRINTS-----",
                                                          "-----BEGIN SSH HOST KEY KEYS-----\n"
                                                          + "\n".join(f"{k.type} {k.blob}" for k, _ in strangers)
                                                          + "\n-----END SSH HOST KEY KEYS-----\n"
                                                          "-----BEGIN SSH HOST KEY FINGERPRINTS-----")]
    with pytest.raises(CheckFailed, match="not trusting it"):
        world.trust_host(INSTANCE, IP, "ec2-user")
    assert "ANSIBLE_SSH_EXTRA_ARGS" not in world.env()
