"""The roles' Debian install commands, run by this machine's shell against an `apt-get` that logs its calls.

python39 and trader_cron each install what is missing with one command from
their vars/Debian.yml. On a fresh host both run, one after the other: the
second must not fetch the package lists the first fetched a moment ago, and
neither may skip a fetch when the lists are old or an install fails on them.
Each case runs in a mount namespace of its own (root; CI runs it) with an
empty /var/lib/apt, so the stamp the commands keep there is the test's alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PYTHON39 = yaml.safe_load((ROOT / "roles/python39/vars/Debian.yml").read_text())["_python39_install_script"]
TRADER_CRON = yaml.safe_load((ROOT / "roles/trader_cron/vars/Debian.yml").read_text())["_trader_cron_install_script"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare"),
]

# Logs each call; `install` fails while the file named by FAIL_INSTALLS still holds a line.
FAKE_APT_GET = """#!/bin/sh
echo "$*" >> "$APT_LOG"
case "$1" in
  install) if [ -s "$FAIL_INSTALLS" ]; then sed -i 1d "$FAIL_INSTALLS"; exit 100; fi ;;
  update) [ -z "$FAIL_UPDATE" ] || exit 100 ;;
esac
exit 0
"""


def run(tmp_path: Path, setup: str, *steps: tuple[str, list[str]], fail_installs: int = 0,
        fail_update: bool = False) -> tuple[list[int], list[str]]:
    """Run each (script, packages) in turn after ``setup``, in one mount namespace; exit codes and apt-get calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "apt-get").write_text(FAKE_APT_GET)
    (bin_dir / "apt-get").chmod(0o755)
    log, fails = tmp_path / "apt.log", tmp_path / "fail-installs"
    log.write_text("")
    fails.write_text("x\n" * fail_installs)
    driver = ["mount -t tmpfs none /var/lib/apt || exit 99", f"{{ {setup}; }} || exit 98"]
    for i, (script, packages) in enumerate(steps):
        (tmp_path / f"step{i}.sh").write_text(script)
        driver.append(f'sh -c "$(cat {tmp_path}/step{i}.sh)" sh {" ".join(packages)}; echo "rc=$?" >> {tmp_path}/rc')
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "APT_LOG": str(log), "FAIL_INSTALLS": str(fails),
           "FAIL_UPDATE": "1" if fail_update else ""}
    (tmp_path / "rc").write_text("")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(driver)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    codes = [int(line.removeprefix("rc=")) for line in (tmp_path / "rc").read_text().split()]
    return codes, log.read_text().splitlines()


def installs(calls: list[str]) -> list[str]:
    return [c.split(" -y -qq --no-install-recommends ")[1] for c in calls if c.startswith("install")]


def test_a_fresh_host_fetches_the_package_lists_once_for_both_roles(tmp_path: Path) -> None:
    codes, calls = run(tmp_path, ":", (PYTHON39, ["python3.9", "python3-pip"]), (TRADER_CRON, ["cron", "tzdata"]))
    assert codes == [0, 0]
    assert [c for c in calls if c.startswith("update")] == ["update -qq"]
    assert calls[0] == "update -qq"
    assert installs(calls) == ["python3.9 python3-pip", "cron tzdata"]


def test_lists_fetched_over_an_hour_ago_are_fetched_again(tmp_path: Path) -> None:
    old = "mkdir -p /var/lib/apt/periodic && touch -d '61 minutes ago' /var/lib/apt/periodic/update-success-stamp"
    codes, calls = run(tmp_path, old, (TRADER_CRON, ["cron"]))
    assert codes == [0] and calls[0] == "update -qq" and installs(calls) == ["cron"]


def test_a_stamp_dated_in_the_future_does_not_pass_for_recent_lists(tmp_path: Path) -> None:
    ahead = "mkdir -p /var/lib/apt/periodic && touch -d '+2 hours' /var/lib/apt/periodic/update-success-stamp"
    codes, calls = run(tmp_path, ahead, (PYTHON39, ["python3.9"]))
    assert codes == [0] and calls[0] == "update -qq" and installs(calls) == ["python3.9"]


def test_an_install_that_fails_on_recent_lists_fetches_them_and_tries_once_more(tmp_path: Path) -> None:
    recent = "mkdir -p /var/lib/apt/periodic && touch -d '10 minutes ago' /var/lib/apt/periodic/update-success-stamp"
    codes, calls = run(tmp_path, recent, (PYTHON39, ["python3.9"]), fail_installs=1)
    assert codes == [0]
    assert calls == ["install -y -qq --no-install-recommends python3.9", "update -qq",
                     "install -y -qq --no-install-recommends python3.9"]
    codes, calls = run(tmp_path, recent, (PYTHON39, ["python3.9"]), fail_installs=2)
    assert codes == [100] and len(installs(calls)) == 2  # fails, and says so, after one retry


def test_a_failed_fetch_installs_nothing_keeps_no_stamp_and_fails(tmp_path: Path) -> None:
    codes, calls = run(tmp_path, ":", (TRADER_CRON, ["cron"]), (TRADER_CRON, ["cron"]), fail_update=True)
    assert codes == [100, 100]
    assert calls == ["update -qq", "update -qq"]  # no stamp from a failed fetch: the next run fetches again
