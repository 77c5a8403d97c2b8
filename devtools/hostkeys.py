"""A known_hosts file for a new EC2 instance, its keys checked against what the instance printed at boot.

Ansible's Mitogen strategy runs ssh with ``StrictHostKeyChecking yes`` ahead
of the project's ``accept-new``, so a host SSH has never seen is refused.
For a throwaway instance (``make aws-check --access ssh``) the key is
accepted here, safely, before Ansible runs:

- cloud-init (Amazon Linux's among others) prints the host keys' fingerprints
  to the serial console between ``-----BEGIN SSH HOST KEY FINGERPRINTS-----``
  and ``-----END SSH HOST KEY FINGERPRINTS-----``, and usually the public keys
  between ``-----BEGIN SSH HOST KEY KEYS-----`` and its END line. EC2's
  GetConsoleOutput returns that through the authenticated AWS API, not
  through the SSH connection being checked.
- The keys (from that block, or else from ``ssh-keyscan``) are kept only if
  their SHA256 fingerprint is one the console printed, and are written to a
  known_hosts file of the run's own; none matching is an error, nothing is
  written.
- Only when the console shows no fingerprints in time (an image without
  cloud-init's output, a console not yet captured) is the key accepted on
  first contact instead (``ssh -o StrictHostKeyChecking=accept-new`` into the
  same dedicated file), and :func:`trust` says so.

Ansible is pointed at the file with ``ssh_options`` (``UserKnownHostsFile``;
Mitogen sets none of its own when it checks keys).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from provision.aws import error_code, error_message

FINGERPRINTS = ("-----BEGIN SSH HOST KEY FINGERPRINTS-----", "-----END SSH HOST KEY FINGERPRINTS-----")
KEYS = ("-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----")
KEY_TYPES = r"(ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa|sk-ssh-ed25519@openssh\.com)"
KEY_LINE = re.compile(KEY_TYPES + r"\s+(AAAA[A-Za-z0-9+/]+={0,2})")
FINGERPRINT = re.compile(r"\b(SHA256:[A-Za-z0-9+/]{43})(?![A-Za-z0-9+/])")
WAIT_SECONDS = 600  # console output can lag the boot by minutes
POLL_SECONDS = 10


class Untrusted(RuntimeError):
    """The host's keys do not match what the instance printed at boot."""


@dataclass(frozen=True)
class HostKey:
    type: str
    blob: str  # base64, as in a .pub file

    @property
    def fingerprint(self) -> str:
        """As ``ssh-keygen -l`` shows it: SHA256 of the key blob, base64 without padding."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _block(console: str, markers: tuple[str, str]) -> list[str] | None:
    """The lines between the last BEGIN/END pair (a reboot prints them again), or None if there is none."""
    begin, end = console.rfind(markers[0]), console.rfind(markers[1])
    if begin < 0 or end < begin:
        return None
    return console[begin + len(markers[0]):end].splitlines()


def fingerprints(console: str) -> set[str]:
    """The SHA256 fingerprints the console printed (lines may carry a prefix such as ``ec2:``)."""
    lines = _block(console, FINGERPRINTS) or []
    return {m.group(1) for line in lines for m in [FINGERPRINT.search(line)] if m}


def keys(console: str) -> list[HostKey]:
    """The public keys the console printed, if it did."""
    lines = _block(console, KEYS) or []
    return [HostKey(m.group(1), m.group(2)) for line in lines for m in [KEY_LINE.search(line)] if m]


def scan(ip: str, timeout: int = 10) -> list[HostKey]:
    """The keys the host offers, by ``ssh-keyscan`` (to be checked against the console's fingerprints)."""
    try:
        proc = subprocess.run(["ssh-keyscan", "-T", str(timeout), ip], capture_output=True, text=True,
                              check=False, timeout=timeout * 4)
    except subprocess.TimeoutExpired:  # trust() asks again until its deadline
        return []
    return [HostKey(m.group(1), m.group(2)) for line in proc.stdout.splitlines()
            if not line.startswith("#") for m in [KEY_LINE.search(line)] if m]


def accept_new(ip: str, user: str, key: Path, known_hosts: Path) -> None:
    """First contact: ssh accepts the host's key into ``known_hosts`` (and only there)."""
    proc = subprocess.run(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}",
                           "-o", "ConnectTimeout=30", f"{user}@{ip}", "true"],
                          capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise Untrusted(f"ssh {user}@{ip} failed on first contact: {proc.stderr.strip()[-400:]}")


def console_output(ec2: Any, instance_id: str) -> str:
    """The instance's console output, the latest where the instance type has it (Nitro)."""
    try:
        return str(ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output") or "")
    except ClientError as exc:  # Latest is refused on instance types that are not Nitro
        if error_code(exc) != "UnsupportedOperation" and "latest" not in error_message(exc).lower():
            raise
        return str(ec2.get_console_output(InstanceId=instance_id).get("Output") or "")


def ssh_options(known_hosts: Path) -> str:
    """ssh options (for ``ANSIBLE_SSH_EXTRA_ARGS``) that check the host against ``known_hosts``."""
    return f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))}"


def trust(ec2: Any, instance_id: str, ip: str, known_hosts: Path, *, user: str, key: Path,
          wait: float = WAIT_SECONDS, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic, keyscan: Callable[[str], list[HostKey]] = scan,
          first_contact: Callable[[str, str, Path, Path], None] = accept_new,
          accept_unseen: bool = False) -> str:
    """Write ``known_hosts`` for the instance at ``ip``; return one line saying how its keys were trusted.

    No waiter waits for a text in the console output: this polls, bounded by ``wait`` seconds.
    """
    deadline = clock() + wait
    printed: set[str] = set()
    offered: list[HostKey] = []
    while True:
        console = console_output(ec2, instance_id)
        printed = fingerprints(console)
        if printed:
            offered = keys(console) or keyscan(ip)
            if offered:
                break
        if clock() >= deadline:
            break
        sleep(POLL_SECONDS)
    if not printed:
        if not accept_unseen:
            raise Untrusted(f"the console output of {instance_id} showed no SSH host key fingerprints within "
                            f"{wait:.0f}s, so its key cannot be checked: run again with --accept-new-host-key to "
                            "accept it on first contact")
        first_contact(ip, user, key, known_hosts)
        return (f"host key: accepted on first contact (ssh accept-new) into {known_hosts}: the console output "
                f"of {instance_id} showed no SSH host key fingerprints within {wait:.0f}s to check it against")
    source = "the console output" if keys(console) else "ssh-keyscan"
    if not offered:
        raise Untrusted(f"{instance_id} printed its host key fingerprints, but {ip} offered ssh-keyscan no key "
                        f"within {wait:.0f}s (is port 22 open to this machine?)")
    matching = [k for k in offered if k.fingerprint in printed]
    if not matching:
        raise Untrusted(f"none of the host keys {ip} offers ({source}: {', '.join(k.fingerprint for k in offered)}) "
                        f"is one {instance_id} printed at boot ({', '.join(sorted(printed))}); not trusting it")
    known_hosts.write_text("".join(f"{ip} {k.type} {k.blob}\n" for k in matching))
    return (f"host key: {len(matching)} key(s) of {ip} from {source}, each matching a fingerprint {instance_id} "
            f"printed at boot (EC2 console output), written to {known_hosts}: "
            + ", ".join(f"{k.type} {k.fingerprint}" for k in matching))
