"""`make aws-check` run against the local world (needs root): the chain a user with an AWS account runs,
here with only the emulator's gaps substituted, each named in its output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devtools.worlds import LocalWorld

pytestmark = [pytest.mark.root, pytest.mark.testhost]

ROOT = Path(__file__).resolve().parents[2]


def test_the_whole_chain_runs_and_everything_is_removed(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "devtools.awscheck", "--local", "--yes", "--workdir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for substitution in LocalWorld.substitutions:
        assert f"substitution: {substitution}" in out
    steps = ["provision up --yes; provision key", "provision start --wait-ready; ansible-playbook site.yml",
             "site.yml again, nothing to change", "provision publish", 'with {"force": true} (Lambda API)',
             "cron job pre-market-setup once",
             "cron job trading once", "(end of day, then stop)", "trade logs and ledger are in the bucket",
             "again, on the stopped host, as every morning", "-stop again",
             "provision down --yes --delete-bucket --force --release-ip; the functions' log groups",
             "nothing of stack stcheck-"]
    at = [out.find(s) for s in steps]
    assert -1 not in at and at == sorted(at), list(zip(steps, at))
    assert "aws-check: the whole chain works on the local world" in out
    # Both configurations' no-change runs, timed side by side over the same path (the figure a real account gives).
    assert re.search(r"no-change site\.yml: [\d.]+ s with the project's ansible\.cfg, [\d.]+ s with Ansible's "
                     r"defaults \([\d.]+x\)", out), out[-3000:]
    assert out.count("ok in ") >= len(steps)
    # The cost estimate and the plan came before anything was made.
    assert out.find("Cost of this check: about $") < out.find("provision up --yes")
    # Everything it made was removed. The check looked in the emulator before and after `down`: every
    # resource of the plan (`provision plan` no longer creates it) and both functions' log groups (the
    # functions ran and wrote to them) were there before, and none of them is after.
    cleanup = json.loads((tmp_path / "cleanup.json").read_text())
    stack = yaml.safe_load((tmp_path / "check-stack.yml").read_text())["stack"]["name"]
    groups = [f"/aws/lambda/{stack}-start", f"/aws/lambda/{stack}-stop"]
    assert cleanup["after"] == []
    assert cleanup["before"][-2:] == groups
    assert {"instance", "eip", "bucket", "keypair", "lambda.start", "lambda.stop", "iam.instance_role",
            "network.vpc", "document.sync", "schedule.start"} <= set(cleanup["before"])
    assert f"log groups removed: {', '.join(groups)}" in out
