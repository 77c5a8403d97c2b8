"""The roles' Amazon Linux 2023 branch, rendered with its facts (no AL2023 host exists here).

This checks data, not a run: every variable of the three roles, with the
RedHat-family vars files and the facts an Amazon Linux 2023 host reports
(x86_64 and arm64), renders with no undefined name; the package, service and
interpreter names are the ones Amazon Linux 2023 has; no Debian-only command
or path is left in; and every name a task of the roles uses is defined by the
roles' data, a task of theirs (register, set_fact, loop) or Ansible itself;
and no file of the roles names the SSM agent (none stops or removes it).
docs/TESTING.md lists what only a real host (make aws-check) can prove.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template

from provision import config, export

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("python39", "workspace_sync", "trader_cron")
init_plugin_loader()  # lookups (env, fileglob) as ansible-playbook has them
for _role in ROLES:  # the roles' own filters, as a play that runs the role finds them
    if (ROOT / "roles" / _role / "filter_plugins").is_dir():
        filter_loader.add_directory(str(ROOT / "roles" / _role / "filter_plugins"))
DEBIAN_ONLY = re.compile(r"\b(apt-get|apt|dpkg(-query)?|dist-packages|/etc/default/|python3\.9-venv|build-essential)\b")


def al2023_facts(arch: str) -> dict[str, Any]:
    return {"os_family": "RedHat", "distribution": "Amazon", "distribution_major_version": "2023",
            "distribution_version": "2023.9.20251117", "pkg_mgr": "dnf", "architecture": arch,
            "service_mgr": "systemd", "python": {"executable": "/usr/bin/python3.9"}}


def trusted(value: Any) -> Any:
    """Values of the roles' own files, as Ansible treats them: templates it may render."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def load(path: Path) -> dict[str, Any]:
    return dict(trusted(yaml.safe_load(path.read_text()) or {}))


@functools.cache  # read once per architecture (render() asks for it many times)
def variables(arch: str) -> dict[str, Any]:
    """What a play of site.yml sees on an AL2023 host: group_vars, the roles' defaults and RedHat vars."""
    merged: dict[str, Any] = {}
    for role in ROLES:
        merged.update(load(ROOT / "roles" / role / "defaults" / "main.yml"))
        for name in ("RedHat.yml", "main.yml"):
            if (ROOT / "roles" / role / "vars" / name).exists():
                merged.update(load(ROOT / "roles" / role / "vars" / name))
    merged.update(load(ROOT / "playbooks" / "group_vars" / "all" / "simpletrader.yml"))
    cfg = config.load(ROOT / "stack.yml", env={})
    merged.update({
        "ansible_facts": al2023_facts(arch),
        "hostvars": {"localhost": {"simpletrader_config": json.loads(json.dumps(export.export(cfg)))}},
        "role_path": str(ROOT / "roles" / "workspace_sync"), "playbook_dir": str(ROOT / "playbooks"),
        "ansible_playbook_python": "/usr/bin/python3", "ansible_check_mode": False,
        # What the python39 role's first tasks set from this data (tasks/main.yml).
        "_python39_method": "package",
        "python39_interpreter": trust_as_template("{{ _python39_package_interpreter }}"),
        # What the trader_cron role's cron task sets for each entry (tasks/jobs.yml, vars).
        "_trader_cron_job": "trading", "_trader_cron_script": "src/setup/setup.py", "_trader_cron_session": "",
        "inventory_hostname": "localhost",
        # Where a role's template lookups look (each role's own directory, as a play running it has).
        "ansible_search_path": [str(ROOT / "roles" / role) for role in ROLES],
    })
    return merged


def render(arch: str, name: str) -> Any:
    values = variables(arch)
    return Templar(loader=DataLoader(), variables=values).template(trust_as_template("{{ " + name + " }}"))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_every_variable_of_the_roles_renders_for_amazon_linux_2023(arch: str) -> None:
    values = variables(arch)
    templar = Templar(loader=DataLoader(), variables=values)
    rendered = {}
    for name in values:
        if name.startswith(("python39_", "_python39_", "workspace_sync_", "_workspace_sync_", "trader_cron_",
                            "_trader_cron_", "simpletrader_")):
            rendered[name] = templar.template(trust_as_template("{{ " + name + " }}"))  # raises on an undefined name
    text = json.dumps({k: v for k, v in rendered.items() if k != "simpletrader_config"}, default=str)
    assert not DEBIAN_ONLY.search(text), DEBIAN_ONLY.search(text)
    assert "x86_64" not in text and "amd64" not in text  # nothing of the roles assumes the architecture


def test_amazon_linux_2023_names() -> None:
    release = "Amazon-2023"
    assert render("aarch64", f"_python39_packages['{release}']") == ["python3", "python3-pip", "python3-devel"]
    assert render("aarch64", "_python39_package_interpreter") == "/usr/bin/python3.9"  # /usr/bin/python3 is dnf's
    assert render("aarch64", "_trader_cron_packages") == ["cronie", "util-linux", "tzdata"]
    assert render("aarch64", "_trader_cron_service") == "crond"
    for script in ("_trader_cron_missing_script", "_python39_missing_script"):
        assert "rpm -q" in render("aarch64", script)
    for script in ("_trader_cron_install_script", "_python39_install_script"):
        assert render("aarch64", script).startswith("dnf install -y")
    assert render("aarch64", "workspace_sync_state_dir") == "/var/lib/simpletrader"
    assert render("aarch64", "workspace_sync_python") == "/usr/bin/python3.9"
    assert render("aarch64", "trader_cron_python") == "/usr/bin/python3.9"


ANSIBLE_NAMES = {"ansible_facts", "ansible_check_mode", "role_path", "playbook_dir", "inventory_hostname", "hostvars",
                 "groups", "ansible_playbook_python", "omit", "item", "ansible_loop", "ansible_managed", "lookup",
                 "query", "q", "now", "undef", "range", "dict", "lipsum", "zip", "namespace", "true", "false",
                 "True", "False", "None"}


def task_files() -> list[Path]:
    return sorted(p for role in ROLES for p in (ROOT / "roles" / role).glob("*/*.yml") if p.parent.name in
                  ("tasks", "handlers")) + sorted(p for role in ROLES for p in (ROOT / "roles" / role / "templates")
                                                   .glob("*.j2"))


class AnyName(dict):  # type: ignore[type-arg]
    """A mapping that has every name (for parsing expressions that use Ansible's own tests and filters)."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> Any:
        return self.value

    def get(self, name: Any, default: Any = None) -> Any:
        return self.value


def names_used(text: str) -> set[str]:
    """The variables a Jinja template text reads (with Ansible's tests and filters taken as known)."""
    env = jinja2.Environment()  # noqa: S701 - parsed, never rendered
    env.tests = AnyName(bool)
    env.filters = AnyName(str)
    return set(jinja2.meta.find_undeclared_variables(env.parse(text)))


BARE = ("when", "failed_when", "changed_when", "that", "until", "loop")  # keys whose values are bare expressions


def names_in(node: Any, key: str = "") -> set[str]:
    """Every variable a task file's values read: templates in strings, bare expressions in conditions."""
    if isinstance(node, dict):
        return set().union(*(names_in(v, k) for k, v in node.items())) if node else set()
    if isinstance(node, list):
        return set().union(*(names_in(v, key) for v in node)) if node else set()
    if isinstance(node, str):
        if key in BARE and "{{" not in node:
            return names_used("{{ " + node + " }}")
        return names_used(node)
    return set()


def test_every_name_a_task_uses_is_defined_somewhere() -> None:
    values = variables("aarch64")
    defined = set(values) | ANSIBLE_NAMES
    for path in task_files():
        text = path.read_text()
        if path.suffix == ".yml":
            for task in yaml.safe_load(text) or []:
                defined |= _defines(task)
    missing = {}
    for path in task_files():
        text = path.read_text()
        used = names_in(yaml.safe_load(text)) if path.suffix == ".yml" else names_used(text)
        unknown = sorted(n for n in used if n not in defined)
        if unknown:
            missing[str(path.relative_to(ROOT))] = unknown
    assert missing == {}


def _defines(task: Any) -> set[str]:
    """Names a task defines for later ones: register, set_fact keys, loop_var, task-level vars, block items."""
    names: set[str] = set()
    if not isinstance(task, dict):
        return names
    if "register" in task:
        names.add(task["register"])
    for key in ("ansible.builtin.set_fact", "set_fact"):
        if isinstance(task.get(key), dict):
            names |= set(task[key])
    names |= set((task.get("vars") or {}).keys())
    names |= {(task.get("loop_control") or {}).get("loop_var", "item")}
    for inner in ("block", "rescue", "always"):
        for sub in task.get(inner) or []:
            names |= _defines(sub)
    return names


AGENT = re.compile(r"\b(amazon-ssm-agent|ssm-agent|amazon-ssm)\b", re.IGNORECASE)


def agent_mentions(node: Any) -> list[str]:
    """Every key or value of a parsed YAML file that names the SSM agent's service or package."""
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in agent_mentions(k) + agent_mentions(v)]
    if isinstance(node, list):
        return [m for v in node for m in agent_mentions(v)]
    return [str(node)] if isinstance(node, str) and AGENT.search(node) else []


def test_no_task_of_the_roles_touches_the_ssm_agent() -> None:
    """Run Command and Session Manager need the preinstalled amazon-ssm-agent: no task, handler, variable or
    template of the roles (nor a play of site.yml) names it, so none stops, disables, masks or removes it.
    Comments may (they are not parsed); a check of the files, not of a host (docs/TESTING.md)."""
    planted = [{"name": "Quiet the host", "ansible.builtin.systemd": {"name": "amazon-ssm-agent", "enabled": False}},
               {"ansible.builtin.dnf": {"name": ["amazon-ssm-agent"], "state": "absent"}},
               {"ansible.builtin.command": "snap remove amazon-ssm-agent"}]
    assert len(agent_mentions(planted)) == 3  # the check sees a task that would
    files = task_files() + sorted(p for role in ROLES for d in ("vars", "defaults", "meta")
                                  for p in (ROOT / "roles" / role / d).glob("*.yml"))
    files += sorted((ROOT / "playbooks").glob("*.yml"))
    assert len(files) > 20, files
    found = {}
    for path in files:
        text = path.read_text()
        hits = agent_mentions(yaml.safe_load(text)) if path.suffix == ".yml" else AGENT.findall(text)
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}
