"""Real scanners on the emulated stack: prowler on its services, parliament and cloudsplaining on its policies.

After ``provision up`` on the emulator, prowler checks the services the stack
uses, and parliament (every policy) and cloudsplaining (the roles' own
policies) check each policy the stack creates, read back from the emulator.
The test fails on any finding on the stack's own resources that
``allowlist.yml`` does not list with its reason, and on an allowlist entry no
finding needs any more.

The scanners pin their own dependencies (prowler pins boto3, botocore,
pydantic ...), so they live in their own virtualenvs, ``.venv-scan/prowler``
and ``.venv-scan/policy``, made by ``make setup`` from
``requirements-scan-*.txt``, and run as subprocesses. Without them the test
fails and says how to make them; ``ST_SKIP_SECURITY_SCAN=1`` turns that into a
skip with the reason, for a quick run outside ``make`` (docs/TESTING.md).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from devtools import localaws
from provision import cli

ROOT = Path(__file__).resolve().parents[2]
SCAN_VENV = ROOT / ".venv-scan"
PROWLER = SCAN_VENV / "prowler" / "bin" / "prowler"
POLICY_PYTHON = SCAN_VENV / "policy" / "bin" / "python"
ALLOWLIST = Path(__file__).with_name("allowlist.yml")
SERVICES = ["ec2", "s3", "iam", "awslambda", "ssm", "sns"]
STACK = "simpletrader"
BUCKET = "simpletrader-working-bucket"

pytestmark = pytest.mark.scan


def _scanners() -> None:
    missing = [str(p.relative_to(ROOT)) for p in (PROWLER, POLICY_PYTHON) if not p.exists()]
    if not missing:
        return
    why = f"the security scanners are not installed ({', '.join(missing)} missing)"
    if os.environ.get("ST_SKIP_SECURITY_SCAN") == "1":
        pytest.skip(f"{why}; skipped because ST_SKIP_SECURITY_SCAN=1")
    pytest.fail(f"{why}: run `make setup` (it creates .venv-scan/ from requirements-scan-*.txt), or set "
                "ST_SKIP_SECURITY_SCAN=1 to skip this test outside make", pytrace=False)


@pytest.fixture(scope="module")
def stack(moto_server: localaws.MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The stack, up on a clean emulator; yields the environment that points at it."""
    _scanners()
    moto_server.reset()
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "s3_bucket_suffix",
                        "S3_BUCKET_SUFFIX")}
    env.update(moto_server.env())
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["--config", str(ROOT / "stack.yml"), "up", "--yes"], out=out, err=err) == 0, err.getvalue()
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _allowlist() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(ALLOWLIST.read_text())
    for tool, entries in data.items():
        for check, entry in entries.items():
            assert isinstance(entry, dict) and str(entry.get("reason", "")).strip(), (
                f"allowlist.yml: {tool}.{check} needs a reason")
    return {tool: {check: e["reason"] for check, e in entries.items()} for tool, entries in data.items()}


def _stack_ids() -> set[str]:
    """Ids and names that mark a resource as the stack's, read from the emulator."""
    ec2 = boto3.client("ec2")
    mine = [{"Name": "tag:Stack", "Values": [STACK]}]
    ids = {f"{STACK}-", BUCKET}
    vpcs = [v["VpcId"] for v in ec2.describe_vpcs(Filters=mine)["Vpcs"]]
    ids |= set(vpcs)
    in_vpc = [{"Name": "vpc-id", "Values": vpcs}]
    ids |= {s["SubnetId"] for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]}
    ids |= {g["GroupId"] for g in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]}
    ids |= {t["RouteTableId"] for t in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]}
    ids |= {a["NetworkAclId"] for a in ec2.describe_network_acls(Filters=in_vpc)["NetworkAcls"]}
    ids |= {g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=mine)["InternetGateways"]}
    instances = [i["InstanceId"] for r in ec2.describe_instances(Filters=mine)["Reservations"] for i in r["Instances"]]
    ids |= set(instances)
    ids |= {v["VolumeId"] for v in ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": instances}])["Volumes"]}
    ids |= {a["AllocationId"] for a in ec2.describe_addresses(Filters=mine)["Addresses"]}
    return ids


def _prowler(env: dict[str, str], out: Path) -> list[dict[str, Any]]:
    cmd = [str(PROWLER), "aws", "--region", "ap-south-1", "--service", *SERVICES, "--output-formats", "json-ocsf",
           "--output-directory", str(out), "--output-filename", "scan", "--no-banner", "--no-color",
           "--ignore-exit-code-3", "--log-level", "ERROR"]
    proc = subprocess.run(cmd, env=dict(env, HOME=str(out)), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, f"prowler exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"
    findings: list[dict[str, Any]] = json.loads((out / "scan.ocsf.json").read_text())
    return findings


def _policies(out: Path) -> None:
    """Every policy the stack creates, one file each, as scan_policies.py expects them."""
    iam, account = boto3.client("iam"), "123456789012"
    for role in (f"{STACK}-instance", f"{STACK}-scheduler"):
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            (out / f"identity--{name}.json").write_text(json.dumps(doc))
        # A managed policy attached to a role grants as much as its own (none is, today).
        for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
            doc = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]
            (out / f"identity--{role}-{attached['PolicyName']}.json").write_text(json.dumps(doc["Document"]))
        trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        for st in trust["Statement"]:
            st["Resource"] = f"arn:aws:iam::{account}:role/{role}"  # what sts:AssumeRole acts on
        (out / f"trust--{role}.json").write_text(json.dumps(trust))
    (out / f"resource--{BUCKET}.json").write_text(boto3.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    lam = boto3.client("lambda")
    for fn in ("start", "stop"):
        (out / f"resource--{STACK}-{fn}.json").write_text(lam.get_policy(FunctionName=f"{STACK}-{fn}")["Policy"])


def _policy_findings(env: dict[str, str], out: Path) -> list[dict[str, Any]]:
    _policies(out)
    proc = subprocess.run([str(POLICY_PYTHON), str(Path(__file__).with_name("scan_policies.py")), str(out)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"scan_policies.py exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


def test_scanners_find_nothing_unexplained_on_the_stack(stack: dict[str, str], tmp_path: Path) -> None:
    allowed = _allowlist()
    started = time.monotonic()
    prowler = _prowler(stack, tmp_path / "prowler")
    ours = _stack_ids()
    found: dict[tuple[str, str], list[str]] = {}
    for f in prowler:
        if f["status_code"] != "FAIL":
            continue
        where = " ".join(f"{r.get('uid', '')} {r.get('name', '')}" for r in f.get("resources", []))
        if any(i in where for i in ours):
            found.setdefault(("prowler", f["metadata"]["event_code"]), []).append(f"{where.strip()}: "
                                                                               f"{f['status_detail'][:160]}")
    (tmp_path / "policies").mkdir()
    for f in _policy_findings(stack, tmp_path / "policies"):
        found.setdefault((f["tool"], f["issue"]), []).append(f"{f['policy']}: {json.dumps(f['detail'])[:200]}")
    seconds = time.monotonic() - started
    print(f"security scan: {len(prowler)} prowler results, {sum(map(len, found.values()))} findings on the "
          f"stack, in {seconds:.0f}s")

    unexplained = {k: v for k, v in found.items() if k[1] not in allowed.get(k[0], {})}
    stale = [f"{tool}.{check}" for tool, checks in allowed.items() for check in checks if (tool, check) not in found]
    report = [f"{tool} {check}:\n    " + "\n    ".join(sorted(set(where))[:5])
              for (tool, check), where in sorted(unexplained.items())]
    assert not unexplained, ("findings on the stack's resources that tests/security/allowlist.yml does not "
                             "explain (fix them, or list the check with its reason):\n" + "\n".join(report))
    assert not stale, f"allowlist.yml lists checks that found nothing any more; remove them: {stale}"
