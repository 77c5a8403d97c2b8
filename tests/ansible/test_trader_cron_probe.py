"""trader_cron's look at the host tells a cron daemon that started before the time zone was set (it reads the
zone when it starts), so the next run restarts it even when the run that set the zone lost its handler.

The role's own probe script (vars/main.yml) runs under this machine's shell against a stand-in systemctl and
stat; no test host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROBE = yaml.safe_load((ROOT / "roles/trader_cron/vars/main.yml").read_text())["_trader_cron_probe_script"]

FAKE_SYSTEMCTL = """#!/bin/sh
case "$1" in
  is-enabled|is-active) [ "$CRON_UP" = 1 ] ;;
  show) echo "$CRON_SINCE" ;;
esac
"""
FAKE_STAT = """#!/bin/sh
echo "$ZONE_SET"
"""
FAKE_TIMEDATECTL = """#!/bin/sh
echo Asia/Kolkata
"""


def probe(tmp_path: Path, *, up: bool, since: str, zone_set: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("systemctl", FAKE_SYSTEMCTL), ("stat", FAKE_STAT), ("timedatectl", FAKE_TIMEDATECTL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    script = jinja2.Template(PROBE).render(_trader_cron_missing_script=":")
    proc = subprocess.run(["sh", "-c", script, "sh", "cron"], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CRON_UP": "1" if up else "0",
                               "CRON_SINCE": since, "ZONE_SET": zone_set})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize(("up", "since", "zone_set", "state"), [
    (True, "Mon 2026-11-30 03:00:00 UTC", "1796004000", "cron=running"),  # zone set 02:00, cron since 03:00
    (True, "Mon 2026-11-30 03:00:00 UTC", "1796011200", "cron=stale"),  # zone set 04:00: cron has the old one
    (True, "Mon 2026-11-30 03:00:00 UTC", "1796007600", "cron=running"),  # the same second: not older
    (False, "", "1796011200", "cron=stopped"),
])
def test_a_cron_daemon_older_than_the_time_zone_is_stale(tmp_path: Path, up: bool, since: str, zone_set: str,
                                                         state: str) -> None:
    assert probe(tmp_path, up=up, since=since, zone_set=zone_set)[:2] == ["zone=Asia/Kolkata", state]


def test_the_daemon_task_restarts_a_stale_one() -> None:
    tasks = yaml.safe_load((ROOT / "roles/trader_cron/tasks/host.yml").read_text())
    [task] = [t for t in tasks if "ansible.builtin.service" in t]
    state = task["ansible.builtin.service"]["state"]
    for line, want in (("cron=stale", "restarted"), ("cron=stopped", "started")):
        assert jinja2.Template(state).render(_trader_cron_host={"stdout_lines": ["zone=x", line]}) == want
    assert "!= 'cron=running'" in " ".join(task["when"])
