"""The emulator works as the stand-in for S3 and SSM that every other test relies on."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from devtools import localaws


def test_s3_object_round_trip(moto: localaws.MotoServer) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="st-roundtrip", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    s3.put_object(Bucket="st-roundtrip", Key="deploy/hello.txt", Body=b"namaste")
    body = s3.get_object(Bucket="st-roundtrip", Key="deploy/hello.txt")["Body"].read()
    assert body == b"namaste"


def test_ssm_securestring_round_trip(moto: localaws.MotoServer) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/ec2/keypair/key-0123", Value="not-a-real-key", Type="SecureString")
    stored = ssm.get_parameter(Name="/ec2/keypair/key-0123")["Parameter"]
    assert stored["Type"] == "SecureString"
    assert stored["Value"] != "not-a-real-key"  # encrypted unless asked
    clear = ssm.get_parameter(Name="/ec2/keypair/key-0123", WithDecryption=True)["Parameter"]
    assert clear["Value"] == "not-a-real-key"


def test_reset_forgets_everything(moto: localaws.MotoServer) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="st-reset", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    moto.reset()
    assert s3.list_buckets()["Buckets"] == []


def test_iam_managed_policies_are_loaded(moto: localaws.MotoServer) -> None:
    iam = boto3.client("iam")
    arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    assert iam.get_policy(PolicyArn=arn)["Policy"]["PolicyName"] == "AmazonSSMManagedInstanceCore"


def test_managed_policies_parsed_once_are_moto_s_own_and_new_after_each_reset(moto: localaws.MotoServer) -> None:
    """devtools/moto_server.py parses moto's managed-policy data once per server: every policy is still
    there with moto's own document, version and dates, and a reset still forgets what was attached."""
    import json
    import urllib.parse

    from moto.iam.aws_managed_policies import aws_managed_policies_data

    data = json.loads(aws_managed_policies_data)
    iam = boto3.client("iam")
    listed = [p for page in iam.get_paginator("list_policies").paginate(Scope="AWS") for p in page["Policies"]]
    assert len(listed) == len(data)
    arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    mine = data["AmazonSSMManagedInstanceCore"]
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    assert policy["DefaultVersionId"] == mine["DefaultVersionId"] and policy["Path"] == mine["Path"]
    assert policy["UpdateDate"].isoformat() == mine["UpdateDate"].replace("Z", "+00:00")
    version = iam.get_policy_version(PolicyArn=arn, VersionId=mine["DefaultVersionId"])["PolicyVersion"]
    document = version["Document"]
    assert (json.loads(urllib.parse.unquote(document)) if isinstance(document, str) else document) == mine["Document"]

    iam.create_role(RoleName="st-attach", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    iam.attach_role_policy(RoleName="st-attach", PolicyArn=arn)
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    first_id = iam.get_policy(PolicyArn=arn)["Policy"]["PolicyId"]
    moto.reset()
    again = iam.get_policy(PolicyArn=arn)["Policy"]
    assert again["AttachmentCount"] == 0 and again["PolicyId"] != first_id


def test_the_server_builds_each_managed_policy_as_moto_s_own_from_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process: importing devtools.moto_server installs its replacement, which builds every AWS managed
    policy with the attributes moto's own ``AWSManagedPolicy.from_data`` gives it (the random id aside), as new
    objects each time. Fails when a moto upgrade changes what from_data builds, or the replacement stops applying."""
    import json
    from types import SimpleNamespace

    from moto.iam import models as iam_models
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    from devtools import moto_server

    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    assert iam_models.IAMBackend._init_aws_policies is moto_server.init_aws_policies
    backend = SimpleNamespace(account_id="123456789012", region_name="aws")
    ours, again = moto_server.init_aws_policies(backend), moto_server.init_aws_policies(backend)
    data = json.loads(aws_managed_policies_data)
    theirs = [iam_models.AWSManagedPolicy.from_data(name, backend.account_id, backend.region_name, d)
              for name, d in data.items()]
    assert len(ours) == len(theirs) == len(data) > 1000

    def attributes(policy: Any) -> dict[str, Any]:
        fields = {k: v for k, v in vars(policy).items() if k not in ("id", "versions")}
        return {**fields, "versions": [vars(v) for v in policy.versions], "type": type(policy)}

    for mine, moto_s in zip(ours, theirs, strict=True):
        assert attributes(mine) == attributes(moto_s), mine.name
    assert not {id(p) for p in ours} & {id(p) for p in again}
    assert not {id(v) for p in ours for v in p.versions} & {id(v) for p in again for v in p.versions}


def test_tls_only_bucket_policy_does_not_deny_everything(moto: localaws.MotoServer) -> None:
    """moto alone denies every request under a Deny conditioned on aws:SecureTransport;
    AWS (and our corrected emulator) apply it only to plain-HTTP requests."""
    import json

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="st-tls", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    s3.put_bucket_policy(Bucket="st-tls", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": ["arn:aws:s3:::st-tls", "arn:aws:s3:::st-tls/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "NoDeletes", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::st-tls/*"},
    ]}))
    s3.put_object(Bucket="st-tls", Key="deploy/ok.txt", Body=b"ok")
    assert s3.get_object(Bucket="st-tls", Key="deploy/ok.txt")["Body"].read() == b"ok"
    # an unconditional Deny still denies: the correction is narrow
    import botocore.exceptions
    import pytest

    with pytest.raises(botocore.exceptions.ClientError):
        s3.delete_object(Bucket="st-tls", Key="deploy/ok.txt")
