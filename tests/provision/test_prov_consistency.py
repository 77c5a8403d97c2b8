"""AWS's eventual consistency, which the emulator does not show: answers given here as AWS documents them.

A key pair just imported may be missing from DescribeKeyPairs; a bucket just
deleted may still answer HeadBucket and then NoSuchBucket; a schedule group
being deleted is listed as DELETING for a while.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from provhelpers import Raw, Runner, respond_once

EMPTY_KEY_PAIRS = (b'<DescribeKeyPairsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                   b"<requestId>r</requestId><keySet/></DescribeKeyPairsResponse>")


def test_a_key_pair_not_yet_listed_after_its_import_is_taken_from_the_import(run: Runner) -> None:
    imported = {"done": False, "hidden": 0}

    def after_import(event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        if event_name.endswith("ec2.ImportKeyPair"):
            imported["done"] = True
        elif event_name.endswith("ec2.DescribeKeyPairs") and imported["done"] and not imported["hidden"]:
            imported["hidden"] += 1
            return AWSResponse(request.url, 200, {}, Raw(EMPTY_KEY_PAIRS))  # type: ignore[arg-type]
        return None

    result = run("up", "--yes", hooks=[("before-send", after_import)])
    assert result.code == 0, result.err
    assert imported["hidden"] == 1
    pair = boto3.client("ec2").describe_key_pairs()["KeyPairs"][0]
    names = [p["Name"] for p in boto3.client("ssm").describe_parameters()["Parameters"]]
    assert f"/ec2/keypair/{pair['KeyPairId']}" in names
    assert "No changes" in run("plan").out  # the parameter is the pair's: nothing left to repair


def test_a_bucket_deleted_a_moment_ago_is_absent(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    no_such_bucket = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code>'
                      b"<Message>The specified bucket does not exist</Message></Error>")
    hook = respond_once("s3.GetPublicAccessBlock", 404, {}, no_such_bucket)
    plan = run("plan", "--json", hooks=[("before-send", hook)])
    assert plan.code == 0, plan.err
    assert hook.seen["n"] == 1
    changes = {c["address"]: c["action"] for c in json.loads(plan.out)["changes"]}
    assert changes["bucket"] == "create"


def test_a_schedule_group_being_deleted_is_absent(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    deleting = json.dumps({"Arn": "arn:aws:scheduler:ap-south-1:123456789012:schedule-group/x", "Name": "x",
                           "State": "DELETING"}).encode()
    hook = respond_once("scheduler.GetScheduleGroup", 200, {"Content-Type": "application/json"}, deleting)
    plan = run("plan", "--json", hooks=[("before-send", hook)])
    assert plan.code == 0, plan.err
    assert hook.seen["n"] == 1
    changes = {c["address"]: c["action"] for c in json.loads(plan.out)["changes"]}
    assert changes["schedule.sessions"] == "create"
