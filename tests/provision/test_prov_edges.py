"""Edges: a bucket owned elsewhere, IAM propagation, ExpectedBucketOwner, commands before up, publish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import yaml
from provhelpers import FULL, ROOT, Runner, invocation, live_counts, respond_once


def test_bucket_name_taken_by_another_account_aborts_before_any_write(run: Runner) -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>BucketAlreadyExists</Code>'
        b"<Message>The requested bucket name is not available.</Message>"
        b"<BucketName>simpletrader-working-bucket</BucketName></Error>"
    )
    hook = respond_once("s3.CreateBucket", 409, {}, body, times=99)
    result = run("up", "--yes", hooks=[("before-send", hook)])
    assert result.code == 1
    assert "belongs to another AWS account" in result.err and "s3_bucket_suffix" in result.err
    assert run.last_recorder is not None
    assert [c[2] for c in run.last_recorder.mutating()] == ["CreateBucket"]
    assert not any(live_counts().values())


def test_bucket_owned_elsewhere_is_caught_by_plan(run: Runner) -> None:
    hook = respond_once("s3.HeadBucket", 403, {}, b"", times=99)
    result = run("plan", hooks=[("before-send", hook)])
    assert result.code == 1
    assert "belongs to another AWS account" in result.err


def test_iam_propagation_errors_are_retried(run: Runner) -> None:
    lam = respond_once(
        "lambda.CreateFunction",
        400,
        {"x-amzn-ErrorType": "InvalidParameterValueException", "Content-Type": "application/json"},
        b'{"Type": "User", "message": "The role defined for the function cannot be assumed by Lambda."}',
        times=2,
    )
    ec2 = respond_once(
        "ec2.RunInstances",
        400,
        {},
        b"<Response><Errors><Error><Code>InvalidParameterValue</Code>"
        b"<Message>Value (simpletrader-instance) for parameter iamInstanceProfile.name is invalid. "
        b"Invalid IAM Instance Profile name</Message></Error>"
        b"</Errors><RequestID>x</RequestID></Response>",
    )
    result = run("up", "--yes", hooks=[("before-send", lam), ("before-send", ec2)])
    assert result.code == 0, result.err
    assert lam.seen["n"] == 2 and ec2.seen["n"] == 1
    assert live_counts() == FULL


def test_every_bucket_call_names_the_expected_owner(run: Runner) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def spy(event_name: str, params: dict[str, Any], **kwargs: Any) -> None:
        if event_name.startswith("provide-client-params.s3."):
            calls.append((event_name.rsplit(".", 1)[-1], dict(params)))

    assert run("up", "--yes", hooks=[("provide-client-params", spy)]).code == 0
    ops = {op for op, _ in calls}
    assert {"PutBucketPolicy", "PutPublicAccessBlock", "PutBucketEncryption", "PutBucketVersioning"} <= ops
    for op, params in calls:
        if op not in ("CreateBucket", "ListBuckets"):
            assert params.get("ExpectedBucketOwner") == "123456789012", op


def test_commands_before_up_explain_what_to_do(run: Runner, tmp_path: Path) -> None:
    key = run("key", "--out", str(tmp_path / "k.pem"))
    assert key.code == 1 and "run `python -m provision up` first" in key.err
    assert not (tmp_path / "k.pem").exists()
    outputs = run("outputs", "--json")
    assert outputs.code == 0
    assert json.loads(outputs.out)["instance_id"] is None
    down = run("down", "--yes")
    assert down.code == 0 and "Plan: 0 to add, 0 to change, 0 to destroy." in down.out
    status = run("status")
    assert status.code == 0 and "not created" in status.out


def test_publish_uploads_the_configured_artifacts(run: Runner, tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(
        Bucket="simpletrader-working-bucket", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"}
    )
    # No packages to install, so an empty wheelhouse is complete (no network needed to build one).
    token = _publishable(run, tmp_path)
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    calls: list[tuple[str, dict[str, Any]]] = []

    def spy(event_name: str, params: dict[str, Any], **kwargs: Any) -> None:
        if event_name.startswith("provide-client-params.s3."):
            calls.append((event_name.rsplit(".", 1)[-1], dict(params)))

    result = run("publish", "--wheelhouse", str(wheelhouse), hooks=[("provide-client-params", spy)])
    assert result.code == 0, result.err
    assert any(op == "PutObject" for op, _ in calls)
    for op, params in calls:
        assert params.get("ExpectedBucketOwner") == "123456789012", op
    manifest = json.loads(
        boto3.client("s3")
        .get_object(Bucket="simpletrader-working-bucket", Key="deploy/manifest.json")["Body"]
        .read()
    )
    assert manifest["version"] == 1
    roles = sorted(o["role"] for o in manifest["objects"] if o["role"] != "wheel")
    assert roles == ["code", "keys", "requirements", "token"]
    secret = (ROOT / "example" / "secrets" / "access_token.txt").read_text().strip()
    assert secret not in result.out + result.err
    again = run("publish", "--token", str(token))
    assert again.code == 0, again.err
    manifest2 = json.loads(
        boto3.client("s3")
        .get_object(Bucket="simpletrader-working-bucket", Key="deploy/manifest.json")["Body"]
        .read()
    )
    assert manifest2["release"] == manifest["release"]


def test_down_waits_out_a_lingering_network_interface(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    busy = respond_once(
        "ec2.DeleteSecurityGroup",
        400,
        {},
        b"<Response><Errors><Error><Code>DependencyViolation</Code><Message>resource sg-1 has a dependent "
        b"object</Message></Error></Errors><RequestID>x</RequestID></Response>",
        times=2,
    )
    down = run("down", "--yes", hooks=[("before-send", busy)])
    assert down.code == 0, down.err
    assert busy.seen["n"] == 2
    assert {k: v for k, v in live_counts().items() if v} == {"bucket": 1, "eip": 1}


def test_config_flag_after_the_command(run: Runner) -> None:
    from provision import cli

    args = cli._parser().parse_args(["plan", "--config", "x.yml"])
    assert args.config == "x.yml"
    args = cli._parser().parse_args(["--config", "y.yml", "up", "--yes"])
    assert args.config == "y.yml" and args.yes


def test_key_pair_without_its_private_key_is_reported_not_replaced(run: Runner) -> None:
    from provision.keypair import _generate, public_key_of

    ec2 = boto3.client("ec2")
    ec2.import_key_pair(KeyName="simpletrader-key", PublicKeyMaterial=public_key_of(_generate()).encode())
    result = run("up", "--yes")
    assert result.code == 1
    assert "cannot be recovered" in result.err and "delete-key-pair" in result.err
    assert [p["KeyName"] for p in ec2.describe_key_pairs()["KeyPairs"]] == ["simpletrader-key"]


# --------------------------------------------------------------------------- publish --sync


def _publishable(run: Runner, tmp_path: Path) -> Path:
    """Point the config at requirements with nothing to install; return a new token file."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    raw = yaml.safe_load(run.config.read_text())
    raw["artifacts"]["requirements"] = str(requirements)
    run.config.write_text(yaml.safe_dump(raw, sort_keys=False))
    token = tmp_path / "access_token.txt"
    token.write_text("b" * 32 + "\n")
    return token


def test_publish_token_sync_runs_the_sync_on_the_running_host(run: Runner, tmp_path: Path) -> None:
    token = _publishable(run, tmp_path)
    assert run("up", "--yes").code == 0
    assert run("publish").code == 0
    sent: list[dict[str, Any]] = []

    def spy(event_name: str, params: dict[str, Any], **kwargs: Any) -> None:
        if event_name.endswith("ssm.SendCommand"):
            sent.append(dict(params))

    ready = invocation("Success", "sync: downloaded and verified 4 objects\nsync: ready release=r1 venv=abc\n")
    result = run("publish", "--token", str(token), "--sync",
                 hooks=[("provide-client-params", spy), ("before-send", ready)])
    assert result.code == 0, result.err
    instance = boto3.client("ec2").describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]
    [params] = sent
    assert params["InstanceIds"] == [instance] and params["DocumentName"] == "simpletrader-sync"
    assert params["Parameters"] == {"executionTimeout": ["600"]}
    assert result.out.splitlines()[-1] == "Host synced: sync: ready release=r1 venv=abc"
    assert "b" * 32 not in result.out + result.err

    failed = invocation("Failed", "sync: FAILED sha256 mismatch for secrets/access_token.txt; refusing\n")
    bad = run("publish", "--token", str(token), "--sync", hooks=[("before-send", failed)])
    assert bad.code == 1
    assert "the sync on host" in bad.err and "ended Failed: sync: FAILED sha256 mismatch" in bad.err
    assert "keeps its previous workspace" in bad.err


def test_publish_sync_leaves_a_stopped_host_to_its_next_start(run: Runner, tmp_path: Path) -> None:
    token = _publishable(run, tmp_path)
    nothing = run("publish", "--sync")  # no stack yet: the bucket is missing, so publish itself fails first
    assert nothing.code == 1
    assert run("up", "--yes").code == 0
    assert run("publish").code == 0
    ec2 = boto3.client("ec2")
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance])
    result = run("publish", "--token", str(token), "--sync")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == f"Host {instance} is stopped: not synced now; its next start syncs it"
    assert not [c for c in run.last_recorder.calls if c[2] == "SendCommand"]  # type: ignore[union-attr]
