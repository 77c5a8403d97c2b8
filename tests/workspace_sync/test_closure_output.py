"""The closure script's output goes to its own log beside the jobs' logs, not into eod's (docs/CONTRACTS.md).

eod's output is the SSM command's, of which AWS returns the first 24,000
characters; the stop function reads eod's last line from it. A closure
script that prints much would push that line, and its warnings, out of it.
"""

from __future__ import annotations

import os
import pwd
from typing import Any

import pytest
from example_release import body
from wshelpers import Host, exchange_today

SSM_OUTPUT_LIMIT = 24_000


def closure(host: Host, source: str) -> None:
    assert host.run("sync").returncode == 0
    (host.workdir / "src" / "setup" / "closure_setup.py").write_text(source)


def logs_dir(host: Host) -> Any:
    logs = host.state_dir / "logs"
    logs.mkdir(exist_ok=True)
    return logs


def test_a_chatty_closure_script_does_not_push_eods_last_line_out_of_the_ssm_output(
        host: Host, s3: Any, published: dict[str, Any]) -> None:
    closure(host, "for i in range(2000):\n    print(f'position {i:05d} closed at market', flush=True)\n"
                  "import sys\nprint('a note on stderr', file=sys.stderr)\n")
    logs = logs_dir(host)
    today = exchange_today()
    eod = host.run("eod")
    assert eod.returncode == 0, eod.stdout + eod.stderr
    assert len(eod.stdout) < SSM_OUTPUT_LIMIT // 4
    assert "position 00000" not in eod.stdout and "a note on stderr" not in eod.stdout + eod.stderr
    assert f"its output goes to {logs}/closure-{today}.log, uploaded with the job logs" in eod.stdout
    assert eod.last.startswith("eod: uploaded ") and "job logs" in eod.last
    kept = (logs / f"closure-{today}.log").read_text()
    assert kept.count("closed at market") == 2000 and "a note on stderr" in kept
    assert body(s3, f"logs/{today}/jobs/closure-{today}.log").decode() == kept


def test_a_failed_closure_scripts_last_lines_are_shown(host: Host, s3: Any, published: dict[str, Any]) -> None:
    closure(host, "print('reading positions')\nprint('broker said: session expired')\nraise SystemExit(3)\n")
    logs_dir(host)
    eod = host.run("eod")
    assert eod.returncode == 1
    assert "eod: closure | reading positions\neod: closure | broker said: session expired\n" in eod.stdout
    assert eod.last.startswith("eod: FAILED closure script exited 3; uploaded ")


def test_without_the_jobs_log_directory_the_output_stays_in_eods(
        host: Host, s3: Any, published: dict[str, Any]) -> None:
    closure(host, "print('summary written')\n")
    assert not (host.state_dir / "logs").exists()
    eod = host.run("eod")
    assert eod.returncode == 0 and "summary written" in eod.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the closure script runs as another user")
def test_a_link_planted_as_the_closure_log_writes_nothing_of_roots(
        host: Host, s3: Any, published: dict[str, Any]) -> None:
    user = pwd.getpwnam("nobody")
    home = host.base / "home"
    (home / "projects").mkdir(parents=True)
    host.overrides.update(workdir=str(home / "projects" / "SimpleTrader"), owner={"user": "nobody"})
    closure(host, "print('closing')\nraise SystemExit(1)\n")
    os.chown(home, user.pw_uid, user.pw_gid)
    os.chown(home / "projects", user.pw_uid, user.pw_gid)
    logs = logs_dir(host)
    os.chown(logs, user.pw_uid, user.pw_gid)
    secret = host.base / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    (logs / f"closure-{exchange_today()}.log").symlink_to(secret)  # what the trading user may plant
    eod = host.run("eod")
    assert eod.returncode == 1 and eod.last.startswith("eod: FAILED closure script exited ")
    assert secret.read_text() == "root's\n"
    assert "closure | root's" not in eod.stdout
