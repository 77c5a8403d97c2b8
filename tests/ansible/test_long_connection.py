"""Which connection the roles' long steps (package installs, builds, pip) take, without a test host.

They go over Ansible's own SSH plugin when the host is reached by SSH (Mitogen
has lost its connection in calls that run for minutes: BENCHMARKS.md), and
over the host's own connection otherwise: a play's `connection: local`, `-c`
on the command line, an inventory's ansible_connection. The long steps on a
host reached by SSH run in the molecule scenarios and the site test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ansible.helpers_ansible import ROOT, tool, tool_env

ROLES = {"python39": "_python39", "trader_cron": "_trader_cron", "workspace_sync": "_workspace_sync"}


def playbook(tmp_path: Path, plays: list[dict], inventory: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    # Facts in memory: the repository's fact cache is not the place for this machine's. The result format
    # pinned: decided() reads the default callback's JSON lines.
    env = tool_env(ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_CACHE_PLUGIN="memory",
                   ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return subprocess.run([tool("ansible-playbook"), "-i", inventory, str(path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def decided(output: str) -> dict[str, str]:
    """host|role -> connection, from the debug lines of the plays below."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        if '"msg": "long-step ' in line:
            _, host, role, connection = line.split('"msg": "')[1].rstrip('"').split(" ")
            found[f"{host}|{role}"] = connection
    return found


def test_each_role_keeps_a_connection_that_is_not_ssh_and_takes_ansibles_ssh_plugin_for_ssh(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {
        "by-default": {},
        "by-ssh-var": {"ansible_connection": "ssh"},
        "by-paramiko-var": {"ansible_connection": "paramiko"},
        "by-local-var": {"ansible_connection": "local"},
    }}}))

    def play(hosts: str, **keywords: str) -> dict:
        tasks = []
        for role, prefix in ROLES.items():
            tasks.append({"name": f"Read {role}'s vars", "ansible.builtin.include_vars": str(ROOT / "roles" / role /
                                                                                            "vars" / "main.yml")})
            tasks.append({"name": f"Show {role}'s choice", "ansible.builtin.debug": {
                "msg": f"long-step {{{{ inventory_hostname }}}} {role} {{{{ {prefix}_long_connection }}}}"}})
        return {"name": f"Plays on {hosts}", "hosts": hosts, "gather_facts": False, **keywords, "tasks": tasks}

    proc = playbook(tmp_path, [play("by-default:by-ssh-var:by-paramiko-var:by-local-var"),
                               {**play("by-default"), "name": "A play's connection: local"} | {"connection": "local"}],
                    str(inventory))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    choices = decided(proc.stdout)
    for role in ROLES:
        # The plays run in order: the second play's line for by-default replaces the first's.
        assert choices[f"by-ssh-var|{role}"] == "ansible.builtin.ssh"
        assert choices[f"by-paramiko-var|{role}"] == "paramiko"
        assert choices[f"by-local-var|{role}"] == "local"
        assert choices[f"by-default|{role}"] == "local"  # the play's keyword
    first = decided(proc.stdout.split("PLAY [A play's connection: local]")[0])
    assert all(first[f"by-default|{role}"] == "ansible.builtin.ssh" for role in ROLES)  # ssh, Ansible's default

    proc = playbook(tmp_path, [play("by-default")], str(inventory), "-c", "paramiko")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(decided(proc.stdout)[f"by-default|{role}"] == "paramiko" for role in ROLES)


@pytest.mark.parametrize("how", ["play keyword", "command line"])
def test_an_install_under_connection_local_runs_locally(tmp_path: Path, how: str) -> None:
    """python39's package install, with its package manager swapped for echo: under `connection: local` it runs
    on this machine (before, it went to Ansible's SSH plugin and found no host)."""
    out = tmp_path / "installed"
    extra = {
        "_python39_packages": "{{ {ansible_facts.distribution ~ '-' ~ ansible_facts.distribution_major_version:"
                              " ['st-fake-package']} }}",
        "_python39_missing_script": 'for p in "$@"; do echo "$p"; done',
        "_python39_install_script": f'echo "$@" > {out}',
    }
    play = {"name": "Install as python39 does", "hosts": "st-nowhere", "gather_facts": True, "gather_subset": ["min"],
            "tasks": [{"name": "Install the missing packages",
                       "ansible.builtin.include_role": {"name": "python39", "tasks_from": "package"}}]}
    # Mitogen's local connection needs the interpreter named (as the molecule scenarios name it).
    args = ["-e", json.dumps(extra), "-e", "ansible_python_interpreter=/usr/bin/python3"]
    if how == "play keyword":
        play["connection"] = "local"
    else:
        args += ["-c", "local"]
    proc = playbook(tmp_path, [play], "st-nowhere,", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert out.read_text().strip() == "st-fake-package"


def test_every_long_step_takes_the_connection_its_set_fact_chose_just_before() -> None:
    """Each task that sets ansible_connection takes it from the role's _step_connection fact, set earlier in the
    same file from _long_connection. Reading _long_connection in the step's own vars would recurse at run time
    (ansible_connection is the variable being set), which the tests above, running python39's install only,
    would not see for the other long steps."""
    steps = 0
    for role, prefix in ROLES.items():
        for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
            chose_at = None
            for number, task in enumerate(_tasks(yaml.safe_load(path.read_text()) or [])):
                facts = task.get("ansible.builtin.set_fact") or {}
                if facts.get(f"{prefix}_step_connection") == f"{{{{ {prefix}_long_connection }}}}":
                    chose_at = number
                connection = (task.get("vars") or {}).get("ansible_connection")
                if connection is not None:
                    steps += 1
                    where = f"{path.relative_to(ROOT)}: {task.get('name')}"
                    assert connection == f"{{{{ {prefix}_step_connection }}}}", where
                    assert chose_at is not None and chose_at < number, f"{where}: no set_fact before it"
    assert steps >= 6  # python39: package, source; trader_cron: install; workspace_sync: venv (2), routine


def _tasks(tasks: list[dict]) -> list[dict]:
    """The tasks of a file in order, a block's own entry followed by the tasks inside it."""
    flat: list[dict] = []
    for task in tasks:
        flat.append(task)
        for key in ("block", "rescue", "always"):
            flat.extend(_tasks(task.get(key) or []))
    return flat
