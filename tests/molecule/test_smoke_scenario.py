"""The shared molecule wiring works end to end on a test host (needs root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.root
@pytest.mark.testhost
def test_smoke_scenario_converges_is_idempotent_and_verifies() -> None:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    proc = subprocess.run([str(BIN / "molecule"), "test", "-s", "smoke"], cwd=TESTS, env=env,
                          text=True, capture_output=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for step in ("converge", "idempotence", "check", "verify", "destroy"):
        assert f"{step}: Executed: Successful" in out, f"step {step} did not succeed:\n{out[-3000:]}"
