"""Root's file tasks never follow a link (docs/SECURITY.md, "root works only in root's directories").

The projects directory, which both workspace_sync and trader_cron make and
give to the trading user, sits in that user's home: the user can replace it
with a link at any moment. The file module follows links by default, so it
would give the link's target (``/etc``, say) to the user, who could then
become root. Each role's real directory task runs here, its loop pointed at
such a link (root and this machine only: no test host).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers_ansible import tool, tool_env

ROOT = Path(__file__).resolve().parents[2]
TASKS = [("workspace_sync", "files.yml"), ("trader_cron", "guard.yml"), ("python39", "source.yml")]


def file_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every file task (ansible.builtin.file, or its short names), in blocks, rescues and always too."""
    found = []
    for task in tasks or []:
        for part in ("block", "rescue", "always"):
            found += file_tasks(task.get(part, []))
        if {"ansible.builtin.file", "file", "ansible.legacy.file"} & set(task):
            found.append(task)
    return found


def test_every_file_task_of_the_roles_follows_no_link() -> None:
    seen = {}
    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")) + sorted(ROOT.glob("roles/*/handlers/*.yml")):
        for task in file_tasks(yaml.safe_load(path.read_text())):
            args = next(task[k] for k in ("ansible.builtin.file", "file", "ansible.legacy.file") if k in task)
            seen[f"{path.relative_to(ROOT)}: {task.get('name')}"] = args.get("follow")
    assert {f"{role}/tasks/{f}" for role, f in TASKS} <= {k.split(":")[0].removeprefix("roles/") for k in seen}
    assert {k: v for k, v in seen.items() if v is not False} == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the task gives a directory to another user")
@pytest.mark.parametrize(("role", "task_file"), TASKS[:2])
def test_a_link_planted_as_the_projects_directory_fails_the_run_and_gives_nothing_away(
        role: str, task_file: str, tmp_path: Path) -> None:
    [task] = [t for t in file_tasks(yaml.safe_load((ROOT / "roles" / role / "tasks" / task_file).read_text()))
              if "{{ item.path }}" == t["ansible.builtin.file"]["path"]]
    target = tmp_path / "etc"  # stands for /etc
    target.mkdir(mode=0o700)
    home = tmp_path / "home"
    home.mkdir()
    (home / "projects").symlink_to(target)  # what the trading user plants
    nobody = pwd.getpwnam("nobody")
    task = dict(task, loop=[{"path": str(home / "projects"), "owner": "nobody", "group": str(nobody.pw_gid)}])
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                         "tasks": [task]}], sort_keys=False))
    run = subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "-e",
                          f"ansible_python_interpreter={sys.executable}", str(playbook)], env=tool_env(),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode != 0, run.stdout
    assert "already exists as a link" in run.stdout + run.stderr
    st = target.stat()
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (0, oct(0o700))  # the target is as it was
