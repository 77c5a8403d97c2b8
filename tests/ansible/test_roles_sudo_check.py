"""The roles' check that the trading user has no sudo passes only on sudo's explicit "not allowed".

``sudo -n -l -U <user>`` exits 0 both when the user may run commands and when
it may not (it says which), and 1 when it cannot answer: an unknown user, a
broken sudoers (seen on a Debian 11 test host). Each role's two real tasks
(roles/*/tasks/user.yml, the user made elsewhere) run here, on this machine,
against a stand-in ``sudo`` that answers each way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers_ansible import tool, tool_env

ROOT = Path(__file__).resolve().parents[2]
ROLES = [("trader_cron", "trader_cron_user"), ("workspace_sync", "workspace_sync_owner")]
MADE = {"trader_cron": "_trader_cron_user_made", "workspace_sync": "_workspace_sync_owner_made"}
ANSWERS = {
    "not allowed": (0, "User trader is not allowed to run sudo on host.", ""),
    "may run": (0, "User trader may run the following commands on host:\n    (ALL) NOPASSWD: ALL", ""),
    "cannot tell": (1, "", "sudo: unknown user trader"),
}


def run_check(role: str, user_var: str, answer: str, tmp_path: Path, *,
              check_mode_new_user: bool = False) -> subprocess.CompletedProcess[str]:
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / "user.yml").read_text())
    check = [t for t in tasks if t["name"] in ("Ask sudo what the trading user may run",
                                               "Check the trading user cannot use sudo")]
    assert len(check) == 2, f"{role}/tasks/user.yml: the two tasks were renamed"
    rc, out, err = ANSWERS[answer]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sudo").write_text(f"#!/bin/sh\n[ \"$LC_ALL\" = C ] || exit 9\nprintf '%s\\n' {out!r}\n"
                               f"printf '%s\\n' {err!r} >&2\nexit {rc}\n")
    (fake / "sudo").chmod(0o755)
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                         "vars": {user_var: "trader", MADE[role]: {"changed": check_mode_new_user}},
                                         "tasks": check}], sort_keys=False))
    env = tool_env()
    env["PATH"] = f"{fake}:{env['PATH']}"
    return subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(playbook),
                           *(["--check"] if check_mode_new_user else [])],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize(("role", "user_var"), ROLES)
@pytest.mark.parametrize(("answer", "passes", "message"), [
    ("not allowed", True, ""),
    ("may run", False, "trader may use sudo, so the trading jobs could become root"),
    ("cannot tell", False, "could not tell whether trader may use sudo (sudo -l -U exited 1: sudo: unknown user"),
])
def test_only_sudos_explicit_refusal_passes(role: str, user_var: str, answer: str, passes: bool, message: str,
                                            tmp_path: Path) -> None:
    run = run_check(role, user_var, answer, tmp_path)
    assert (run.returncode == 0) is passes, run.stdout + run.stderr
    assert message in run.stdout


@pytest.mark.parametrize(("role", "user_var"), ROLES)
def test_a_check_mode_run_before_the_user_exists_does_not_ask_sudo(role: str, user_var: str,
                                                                   tmp_path: Path) -> None:
    """In check mode the user task makes nothing, so sudo would answer "unknown user": that is no failure."""
    run = run_check(role, user_var, "cannot tell", tmp_path, check_mode_new_user=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "skipping" in run.stdout
