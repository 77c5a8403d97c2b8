"""Adopting the original app's bucket: `up` manages only its own policy statements, lifecycle rules and tag
keys, and keeps the operator's (an Athena reader's grant, a rule of their own, their tags, their data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import yaml
from provhelpers import Runner

from provision.bucket import LIFECYCLE_IDS, POLICY_SIDS

BUCKET = "simpletrader-working-bucket"
ATHENA = {"Sid": "AthenaRead", "Effect": "Allow",
          "Principal": {"AWS": "arn:aws:iam::123456789012:role/athena-reader"},
          "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/SimpleTraderLedger/*"}
THEIR_RULE = {"ID": "expire-scratch", "Status": "Enabled", "Filter": {"Prefix": "scratch/"},
              "Expiration": {"Days": 7}}
DATA = {"SimpleTraderLedger/ledger.csv": b"date,pnl\n", "SimpleTraderLogs/2026-11-27/trades.csv": b"t\n"}


def the_originals_bucket() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [ATHENA]}))
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [THEIR_RULE]})
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "Owner", "Value": "ajith"}]})
    for key, body in DATA.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def bucket_state() -> dict[str, Any]:
    s3 = boto3.client("s3")
    return {
        "statements": json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"],
        "rules": s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"],
        "tags": {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]},
        "data": {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in DATA},
    }


def test_up_keeps_everything_of_the_operators_own(run: Runner) -> None:
    the_originals_bucket()
    plan = run("plan")
    assert "AthenaRead" not in plan.out and "expire-scratch" not in plan.out  # only our parts are shown
    for _ in range(2):
        up = run("up", "--yes")
        assert up.code == 0, up.err
        state = bucket_state()
        assert ATHENA in state["statements"]
        assert sorted(st["Sid"] for st in state["statements"]) == sorted(["AthenaRead", *POLICY_SIDS])
        theirs = [r for r in state["rules"] if r["ID"] == "expire-scratch"]
        assert theirs and theirs[0]["Expiration"] == {"Days": 7} and theirs[0]["Filter"] == {"Prefix": "scratch/"}
        ours = {r["ID"]: r for r in state["rules"] if r["ID"] in LIFECYCLE_IDS.values()}
        assert {r["Filter"]["Prefix"] for r in ours.values()} == {"deploy/", "secrets/"}
        assert {r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in ours.values()} == {30}
        assert state["tags"]["Owner"] == "ajith" and state["tags"]["Project"] == "simpletrader"
        assert state["data"] == DATA
    assert run.last_recorder is not None
    assert not [c for c in run.last_recorder.mutating() if c[1] == "s3"]  # the second up changed nothing
    assert run("plan", "--detailed-exitcode").code == 0


def test_a_changed_expiry_is_planned_and_applied_to_our_rules_only(run: Runner) -> None:
    the_originals_bucket()
    assert run("up", "--yes").code == 0
    import yaml

    raw = yaml.safe_load(run.config.read_text())
    raw["bucket"]["noncurrent_version_days"] = 7
    run.config.write_text(yaml.safe_dump(raw))
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2 and "lifecycle" in plan.out and "expire-scratch" not in plan.out
    assert run("up", "--yes").code == 0
    rules = {r["ID"]: r for r in bucket_state()["rules"]}
    assert rules["expire-scratch"] == THEIR_RULE | {"Filter": {"Prefix": "scratch/"}}
    assert {rules[i]["NoncurrentVersionExpiration"]["NoncurrentDays"] for i in LIFECYCLE_IDS.values()} == {7}



def test_a_second_stack_does_not_take_over_the_first_stacks_bucket(run: Runner, stack_config: Path) -> None:
    """Only stack.name differs: the second stack's plan and up refuse the bucket and change nothing."""
    assert run("up", "--yes").code == 0
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="SimpleTraderLedger/ledger.csv", Body=b"live\n")
    before = (s3.get_bucket_policy(Bucket=BUCKET)["Policy"], s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"])
    raw = yaml.safe_load(stack_config.read_text())
    raw["stack"]["name"] = "paper"
    stack_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    for command in (("plan",), ("up", "--yes")):
        result = run(*command)
        assert result.code != 0
        assert f"bucket {BUCKET} belongs to stack 'simpletrader' (its Stack tag), not to 'paper'" in result.err
        assert "set bucket.name" in result.err
        assert run.last_recorder is not None and not run.last_recorder.mutating()
    assert (s3.get_bucket_policy(Bucket=BUCKET)["Policy"], s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]) == before
    assert s3.get_object(Bucket=BUCKET, Key="SimpleTraderLedger/ledger.csv")["Body"].read() == b"live\n"
    # Its down leaves the first stack's bucket alone, even when asked to delete its own.
    down = run("down", "--yes", "--delete-bucket", "--force")
    assert down.code == 0, down.err
    assert "not this stack's: left alone" in down.out
    assert s3.get_object(Bucket=BUCKET, Key="SimpleTraderLedger/ledger.csv")["Body"].read() == b"live\n"
    assert (s3.get_bucket_policy(Bucket=BUCKET)["Policy"], s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]) == before


def test_a_renamed_stack_adopts_the_bucket_its_old_name_kept_once_that_is_down(run: Runner,
                                                                              stack_config: Path) -> None:
    """The refusal's advice works: down under the old name keeps the bucket, and up under the new one adopts it
    with its data, its tags and its policy rewritten for the new stack's roles."""
    assert run("up", "--yes").code == 0
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="SimpleTraderLedger/ledger.csv", Body=b"kept\n")
    assert run("down", "--yes").code == 0
    raw = yaml.safe_load(stack_config.read_text())
    raw["stack"]["name"] = "paper"
    stack_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    plan = run("plan")
    assert plan.code == 0 and "adopting the bucket of stack 'simpletrader', which is down" in plan.out
    up = run("up", "--yes")
    assert up.code == 0, up.err
    tagset = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tagset["Stack"] == "paper"
    policy = s3.get_bucket_policy(Bucket=BUCKET)["Policy"]
    assert "role/paper-instance" in policy and "role/simpletrader-instance" not in policy
    assert s3.get_object(Bucket=BUCKET, Key="SimpleTraderLedger/ledger.csv")["Body"].read() == b"kept\n"
    assert run("plan", "--detailed-exitcode").code == 0
