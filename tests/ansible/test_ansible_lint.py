"""The Ansible code passes ansible-lint's production profile and yamllint (as `make lint` runs them)."""

from __future__ import annotations

import subprocess

from tests.ansible.helpers_ansible import ROOT, tool, tool_env


def test_ansible_lint_production_profile() -> None:
    cmd = [tool("ansible-lint"), "--profile", "production", "--nocolor", "roles", "playbooks", "site.yml"]
    # As `make lint` runs it: the syntax checks read no EC2 inventory.
    env = tool_env(ANSIBLE_INVENTORY=str(ROOT / "tests/ansible/lint-inventory.yml"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in out
    assert "Failed to load" not in out  # a playbook ansible-lint cannot load is not linted at all


def test_yamllint_strict() -> None:
    # The whole tree, as `make lint` runs it (.yamllint ignores the virtualenvs and generated state).
    proc = subprocess.run([tool("yamllint"), "-s", "-f", "parsable", "."],
                          cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_make_test_leaves_these_linters_to_the_suite_and_make_lint_runs_the_same_commands() -> None:
    """`make test` does not run yamllint and ansible-lint before pytest (the tests above do); `make lint`
    still runs both, with the arguments the tests use."""
    def recipe(target: str) -> str:
        # PYTEST_ARGS emptied: the caller's own (say -k 'not yamllint') would be printed in the recipe.
        proc = subprocess.run(["make", "-n", "-s", target, "VENV=.venv", "PYTEST_ARGS="], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, env={**tool_env(), "MAKEFLAGS": ""})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    lint, test = recipe("lint"), recipe("test")
    assert "yamllint -s ." in lint and "ansible-lint --profile production roles playbooks site.yml" in lint
    assert "ANSIBLE_INVENTORY=tests/ansible/lint-inventory.yml" in lint
    assert "yamllint" not in test and "ansible-lint" not in test
    assert "ruff check" in test and "mypy" in test and "pytest" in test


def test_playbooks_pass_the_syntax_check() -> None:
    for playbook in ("site.yml", "playbooks/site.yml", "playbooks/sync.yml", "playbooks/check_hosts.yml"):
        proc = subprocess.run([tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", playbook],
                              cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
