"""The emulator works as the stand-in for S3 and SSM that every other test relies on."""

from __future__ import annotations

import boto3

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
