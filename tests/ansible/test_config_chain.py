"""Every link from a stack.yml key to the host agrees, so a host key added at one end cannot be left behind.

A key that reaches the host passes through, in order: the config schema
(provision/config.py) and its export (``python -m provision config --json``);
one line of playbooks/group_vars/all/simpletrader.yml that maps it to a role
variable; the role's interface (``defaults/main.yml`` and
``meta/argument_specs.yml``); and, for the workspace routine, the
configuration file the role writes and the routine's ``SCHEMA``. The roles
keep an interface of their own (they run alone under molecule and on any
inventory), so these links are written, not generated: the tests below fail
when one is missing or disagrees (docs/PROVISION.md, "Adding a config key").
No test host is needed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from simpletrader_workspace import config as routine_config

from provision import config, export
from provision.rules import TOKEN_CHECKS
from tests.ansible.helpers_ansible import ROOT

ROLES = ("python39", "workspace_sync", "trader_cron")
GROUP_VARS = ROOT / "playbooks" / "group_vars" / "all" / "simpletrader.yml"
MAPPED = re.compile(r"^\{\{ simpletrader_config\.([a-z0-9_.]+) \}\}$")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def spec_options(role: str) -> dict[str, dict[str, Any]]:
    return _yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def role_defaults(role: str) -> dict[str, Any]:
    return _yaml(ROOT / "roles" / role / "defaults" / "main.yml")


def mapped() -> dict[str, str]:
    """Role variable -> the exported config path group_vars maps it from (a mapping of another shape,
    with a filter or a default, is refused: it would derive or default what the export already holds)."""
    found = {}
    for name, value in _yaml(GROUP_VARS).items():
        if name == "simpletrader_config" or "simpletrader_config." not in str(value):
            continue
        match = MAPPED.match(str(value).strip())
        assert match, f"group_vars {name}: {value!r} is not a plain {{{{ simpletrader_config.<key> }}}}"
        found[name] = match.group(1)
    return found


def exported() -> dict[str, Any]:
    return export.export(config.load(ROOT / "stack.yml", env={"s3_bucket_suffix": "-test"}))


def lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            raise KeyError(path)
        data = data[part]
    return data


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_and_argument_spec_name_the_same_variables(role: str) -> None:
    options, defaults = spec_options(role), role_defaults(role)
    assert sorted(set(defaults) - set(options)) == [], f"{role}: in defaults/main.yml, not in argument_specs"
    missing = sorted(n for n, o in options.items() if n not in defaults and not o.get("required"))
    assert missing == [], f"{role}: in argument_specs with no default in defaults/main.yml and not required"


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_agree_with_argument_spec_defaults(role: str) -> None:
    options, defaults = spec_options(role), role_defaults(role)
    differ = {name: (defaults[name], o["default"]) for name, o in options.items()
              if "default" in o and name in defaults and defaults[name] != o["default"]}
    assert differ == {}, f"{role}: defaults/main.yml (left) and argument_specs (right) disagree"


def test_every_group_vars_mapping_reaches_an_exported_key_and_a_role_variable() -> None:
    data = exported()
    options = {name: role for role in ROLES for name in spec_options(role)}
    links = mapped()
    assert len(links) > 10, "the mapping lines were not found; has their shape changed?"
    # Set from a project constant instead of the config (the lock file, the state directory): still a
    # variable the role declares.
    for name in _yaml(GROUP_VARS):
        if name.startswith(tuple(f"{role}_" for role in ROLES)):
            assert name in options, f"group_vars sets {name}, which no role's argument_specs declares"
    for name, path in links.items():
        assert name in options, f"group_vars maps {name}, which no role's argument_specs declares"
        try:
            lookup(data, path)
        except KeyError:
            pytest.fail(f"group_vars maps {name} from simpletrader_config.{path}, which the export lacks")


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_a_role_requires_is_mapped(role: str) -> None:
    required = sorted(n for n, o in spec_options(role).items() if o.get("required"))
    links = mapped()
    assert [n for n in required if n not in links] == []


def test_every_host_and_eod_key_reaches_a_role() -> None:
    """A key of the host's sections that no group_vars line maps would be checked by plan and then ignored."""
    data = exported()
    used = set(mapped().values())
    for section in ("host", "eod"):
        for name in data[section]:
            path = f"{section}.{name}"
            assert path in used, (
                f"{path} is in the schema but no role gets it: map it in {GROUP_VARS.relative_to(ROOT)}")


def test_the_routine_config_the_role_writes_is_the_routine_schema() -> None:
    written = _yaml(ROOT / "roles" / "workspace_sync" / "vars" / "main.yml")["_workspace_sync_config"]
    schema = [key.name for key in routine_config.SCHEMA]
    # uv: the routine finds it itself (next to its interpreter, else on PATH); the role never sets it.
    assert sorted(written) == sorted(set(schema) - {"uv"})


def test_token_check_modes_are_the_functions_own_everywhere() -> None:
    spec = spec_options("trader_cron")["trader_cron_token_check"]
    assert tuple(spec["choices"]) == TOKEN_CHECKS
    guard = (ROOT / "roles" / "trader_cron" / "templates" / "simpletrader-job.j2").read_text()
    line = re.search(r"^TOKEN_CHECKS = (.+)$", guard, re.MULTILINE)
    assert line is not None, "the job guard no longer defines TOKEN_CHECKS"
    assert ast.literal_eval(line.group(1)) == TOKEN_CHECKS
