"""Each role's one look at the host covers every file and directory its included task file writes.

workspace_sync's tasks/files.yml and trader_cron's tasks/guard.yml run only
when the look (tasks/main.yml) finds something that differs from the role's
lists in vars/main.yml. A path written by one of those tasks but missing from
the lists would be put right only by chance, when something else differed:
this fails on such a path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CASES = [("workspace_sync", "files.yml", "_workspace_sync"), ("trader_cron", "guard.yml", "_trader_cron")]


def written_paths(tasks: list[dict[str, Any]]) -> set[str]:
    found = set()
    for task in tasks:
        for module, args in task.items():
            if module.startswith("ansible.builtin.") and isinstance(args, dict):
                for key in ("dest", "path"):
                    if key in args:
                        found.add(str(args[key]))
    return found


@pytest.mark.parametrize(("role", "task_file", "prefix"), CASES)
def test_every_path_the_included_tasks_write_is_looked_at(role: str, task_file: str, prefix: str) -> None:
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / task_file).read_text())
    role_vars = yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text())
    listed = {str(item["path"]) for item in role_vars[f"{prefix}_dirs"] + role_vars[f"{prefix}_files"]}
    written = written_paths(tasks)
    assert written, f"no dest/path found in {task_file}: the test reads the wrong shape"
    loops = {"{{ item.path }}"}  # the directories' loop, over the list itself
    missing = sorted(written - listed - loops)
    # workspace_sync's lock file is a touch (file module) and listed with its empty content.
    assert not missing, f"{role}/tasks/{task_file} writes {missing}, which {prefix}_dirs/_files do not list"
    looked = role_vars[f"{prefix}_look_args"]
    for var in (f"{prefix}_dirs", f"{prefix}_files"):
        assert var in looked, f"{prefix}_look_args does not take {var}"
