"""The local test host: a Debian 11 system booted with systemd-nspawn (tests/hosts/testhost), and the
subprocess runner every local day uses."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTHOST = ROOT / "tests" / "hosts" / "testhost"
BIN = Path(sys.executable).parent


class DayFailed(RuntimeError):
    pass


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT, check: bool = True,
        log: Path | None = None, timeout: float = 1800,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout, input=input_text)
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}\n[exit {proc.returncode}]\n\n")
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise DayFailed(f"{shlex.join(cmd[:4])} ... exited {proc.returncode}:\n{tail}")
    return proc


@dataclass
class Host:
    name: str
    ip: str
    gateway: str
    key: str

    @classmethod
    def up(cls, name: str) -> Host:
        # Always a fresh host: one of that name left up by an interrupted run holds its half-done state.
        data = json.loads(run([str(TESTHOST), "up", name, "--fresh"], timeout=900).stdout)
        return cls(name, data["ip"], data["gateway"], data["key"])

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                f"ec2-user@{self.ip}"]

    def sh(self, script: str, *, check: bool = True, log: Path | None = None,
           timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the host as ec2-user (prefix `sudo` for root)."""
        return run([*self.ssh_argv(), script], check=check, log=log, timeout=timeout)

    def down(self) -> None:
        run([str(TESTHOST), "down", self.name], check=False)
