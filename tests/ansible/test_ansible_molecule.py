"""Each role's molecule scenario on a Debian 11 test host (root; CI runs it).

`molecule test` runs the scenario's whole sequence: destroy, syntax, create,
prepare, converge, idempotence (a second converge must report changed=0),
check mode, verify (outcomes on the host), cleanup, destroy.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.ansible.helpers_ansible import ROOT, tool, tool_env

pytestmark = [pytest.mark.root, pytest.mark.testhost]

ROLES = ["python39", "trader_cron", "workspace_sync"]
REQUIRED_STEPS = ["syntax", "create", "converge", "idempotence", "check", "verify", "destroy"]


@pytest.mark.parametrize("role", ROLES)
def test_molecule_scenario(role: str) -> None:
    proc = subprocess.run([tool("molecule"), "test"], cwd=ROOT / "roles" / role, env=tool_env(),
                          capture_output=True, text=True, timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    for step in REQUIRED_STEPS:
        # "default ➜ step: ..." on a terminal, "[default > step] ..." otherwise
        done = re.search(rf"default\W+{step}\W+Executed: Successful", output)
        assert done, f"{step} did not run:\n{output[-4000:]}"
    recap = r"^default\s*: actions=(\d+)\s+successful=\1\s+disabled=0\s+skipped=0\s+missing=0\s+failed=0"
    assert re.search(recap, output, re.MULTILINE), output[-4000:]
