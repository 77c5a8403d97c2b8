"""instance.extra_policy_arns and instance.secrets: checked before any AWS call, planned, attached, kept.

What the instance role may read is judged on the live documents read back
from the emulator with tests/provision/policy_eval.py (moto does not scope
Secrets Manager actions by resource; docs/TESTING.md).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
import yaml
from policy_eval import ALLOW, Request, decide
from provhelpers import Runner, role_policies

ACCOUNT = "123456789012"
ROLE = "simpletrader-instance"
AWS_MANAGED = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
SECRETS = f"arn:aws:secretsmanager:ap-south-1:{ACCOUNT}:secret"


def with_instance(run: Runner, **keys: Any) -> None:
    raw = yaml.safe_load(run.config.read_text())
    raw["instance"].update(keys)
    run.config.write_text(yaml.safe_dump(raw, sort_keys=False))


def customer_policy() -> str:
    """A managed policy of the account's own, with a path, as a team would make it."""
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*"}]}
    return str(boto3.client("iam").create_policy(PolicyName="trader-extra", Path="/team/",
                                                 PolicyDocument=json.dumps(doc))["Policy"]["Arn"])


def attached() -> list[str]:
    found = boto3.client("iam").list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"]
    return sorted(p["PolicyArn"] for p in found)


def inline_policy() -> dict[str, Any]:
    doc: dict[str, Any] = boto3.client("iam").get_role_policy(RoleName=ROLE, PolicyName=f"{ROLE}-access")[
        "PolicyDocument"]
    return doc


# --------------------------------------------------------------------------- checked before any AWS call


def test_aws_and_customer_managed_arns_and_both_secret_forms_are_accepted(run: Runner) -> None:
    from provision import config

    arns = [AWS_MANAGED, f"arn:aws:iam::{ACCOUNT}:policy/team/trader-extra"]
    secrets = ["kite/keys", f"{SECRETS}:other/db-AbCdEf"]
    with_instance(run, extra_policy_arns=arns, secrets=secrets)
    cfg = config.load(run.config, env={})
    assert cfg.instance.extra_policy_arns == tuple(arns)
    assert cfg.instance.secrets == tuple(secrets)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("extra_policy_arns", ["CloudWatchAgentServerPolicy"],
         "instance.extra_policy_arns[0]: 'CloudWatchAgentServerPolicy' is a policy name; give its full ARN: "
         "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy (AWS's) or "
         "arn:aws:iam::<account-id>:policy/CloudWatchAgentServerPolicy (the account's own, with its path)"),
        ("extra_policy_arns", ["arn:aws:iam::12345:policy/trader-extra"],  # an account id of 5 digits
         "instance.extra_policy_arns[0]: 'arn:aws:iam::12345:policy/trader-extra' is not an IAM policy ARN, e.g. "
         "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy or arn:aws:iam::123456789012:policy/trader-extra"),
        ("extra_policy_arns", [f"arn:aws:iam::{ACCOUNT}:role/trader"],  # a role, not a policy
         f"instance.extra_policy_arns[0]: 'arn:aws:iam::{ACCOUNT}:role/trader' is not an IAM policy ARN, e.g."),
        ("extra_policy_arns", [AWS_MANAGED, AWS_MANAGED], "instance.extra_policy_arns[1]:"),
        ("secrets", [f"arn:aws:secretsmanager:ap-south-1:{ACCOUNT}:kite/keys"],  # no ":secret:"
         f"instance.secrets[0]: 'arn:aws:secretsmanager:ap-south-1:{ACCOUNT}:kite/keys' is not a Secrets Manager "
         f"secret ARN, e.g. arn:aws:secretsmanager:ap-south-1:123456789012:secret:kite/keys-AbCdEf"),
        ("secrets", ["kite keys"],
         "instance.secrets[0]: 'kite keys' is not a secret name (letters, digits and /_+=.@-), e.g. kite/keys"),
    ],
)
def test_a_bad_policy_or_secret_is_refused_with_its_key_and_fix_before_any_aws_call(
        run: Runner, key: str, value: list[str], expected: str) -> None:
    with_instance(run, **{key: value})
    for command in (["plan"], ["up", "--yes"]):
        result = run(*command)
        assert result.code == 1, result.out
        assert run.last_recorder is not None and run.last_recorder.calls == []
        assert "1 problem; nothing was sent to AWS" in result.err
        assert expected in result.err, result.err


# --------------------------------------------------------------------------- against the emulator


def test_plan_shows_up_attaches_and_a_second_up_keeps_them(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    assert attached() == []
    own = customer_policy()
    with_instance(run, extra_policy_arns=[AWS_MANAGED, own], secrets=["kite/keys", f"{SECRETS}:other/db-AbCdEf"])

    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.out + plan.err
    assert f"  ~ iam.instance_role ({ROLE})" in plan.out
    assert f"      managed_policies: [] -> {json.dumps(sorted([AWS_MANAGED, own]))}" in plan.out
    policy_line = [line for line in plan.out.splitlines() if line.startswith("      inline_policies: ")]
    assert len(policy_line) == 1, plan.out
    new = policy_line[0].split(" -> ", 1)[1]
    assert f'"{SECRETS}:kite/keys-??????"' in new and f'"{SECRETS}:other/db-AbCdEf"' in new
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out
    assert run.last_recorder is not None and run.last_recorder.mutating() == []

    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert run.last_recorder is not None
    assert sorted(c[2] for c in run.last_recorder.mutating()) == ["AttachRolePolicy", "AttachRolePolicy",
                                                                  "PutRolePolicy"]
    assert attached() == sorted([AWS_MANAGED, own])
    statements = {st.get("Sid"): st for st in inline_policy()["Statement"]}
    assert statements["ReadTheListedSecrets"]["Action"] == ["secretsmanager:GetSecretValue"]

    again = run("up", "--yes")
    assert again.code == 0, again.err
    assert run.last_recorder.mutating() == []  # no detach, no re-attach
    assert attached() == sorted([AWS_MANAGED, own])
    assert run("plan", "--detailed-exitcode").code == 0


def test_the_host_may_read_exactly_the_listed_secrets(run: Runner) -> None:
    def may_read(arn: str, action: str = "secretsmanager:GetSecretValue") -> bool:
        return decide(role_policies(ROLE), Request(action, arn)) == ALLOW

    assert run("up", "--yes").code == 0
    assert not may_read(f"{SECRETS}:kite/keys-AbCdEf")  # nothing listed: no secret at all
    with_instance(run, secrets=["kite/keys", f"{SECRETS}:other/db-AbCdEf"])
    assert run("up", "--yes").code == 0

    # A name: that secret, whatever six-character suffix Secrets Manager gave it ...
    assert may_read(f"{SECRETS}:kite/keys-AbCdEf")
    assert may_read(f"{SECRETS}:kite/keys-Zz09Yy")
    # ... and not another whose name starts the same, nor the same name in another region or account.
    assert not may_read(f"{SECRETS}:kite/keys-old-AbCdEf")
    assert not may_read(f"{SECRETS}:kite/keys2-AbCdEf")
    assert not may_read(f"{SECRETS}:kite/other-AbCdEf")
    assert not may_read(f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:kite/keys-AbCdEf")
    assert not may_read("arn:aws:secretsmanager:ap-south-1:210987654321:secret:kite/keys-AbCdEf")
    # An ARN: exactly that secret.
    assert may_read(f"{SECRETS}:other/db-AbCdEf")
    assert not may_read(f"{SECRETS}:other/db-ZzZzZz")
    # Reading only: no other Secrets Manager action on them.
    for action in ("secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret", "secretsmanager:ListSecrets",
                   "secretsmanager:DescribeSecret"):
        assert not may_read(f"{SECRETS}:kite/keys-AbCdEf", action), action
