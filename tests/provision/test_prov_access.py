"""One reader per secret: what the stack's roles and bucket policy let each principal do.

Where the emulator evaluates the rule (moto's IAM-auth mode evaluates identity
policies by action), the test signs real requests with the role's
credentials. Where it does not (resource scoping of SSM actions, conditions
in bucket policies), the live policy documents are read back from the
emulator and evaluated by tests/provision/policy_eval.py. docs/TESTING.md
says which is which.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from provhelpers import Runner

from devtools import localaws

ACCOUNT = "123456789012"
BUCKET = "simpletrader-working-bucket"


def _outputs(run: Runner) -> dict[str, Any]:
    out = run("outputs", "--json")
    assert out.code == 0, out.err
    data: dict[str, Any] = json.loads(out.out)
    return data


def _session_of(role_arn: str) -> boto3.Session:
    """Credentials of a session of ``role_arn``, as the instance profile hands them to the host."""
    creds = boto3.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="i-0123456789abcdef0")
    c = creds["Credentials"]
    return boto3.Session(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                         aws_session_token=c["SessionToken"], region_name="ap-south-1")


def _denied(call: Any, **kwargs: Any) -> bool:
    """The call is refused as not authorized (moto answers JSON services' denials with a bare 403)."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"] == 403 and response["Error"]["Code"] in (
        "403", "AccessDenied", "AccessDeniedException")


def test_instance_role_is_denied_every_parameter_read(run: Runner, moto: localaws.MotoServer) -> None:
    assert run("up", "--yes").code == 0
    key_parameter = _outputs(run)["key_parameter"]
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/other-app/db-password", Value="unrelated-secret", Type="SecureString")
    boto3.client("s3").put_object(Bucket=BUCKET, Key="secrets/keys.json", Body=b"{}")
    host = _session_of(f"arn:aws:iam::{ACCOUNT}:role/simpletrader-instance")
    with moto.iam_enforced():
        # The emulator does evaluate this role's policies: its own secrets are readable ...
        assert host.client("s3").get_object(Bucket=BUCKET, Key="secrets/keys.json")["Body"].read() == b"{}"
        # ... and no parameter is, the SSH key's or any other.
        host_ssm = host.client("ssm")
        for name in (key_parameter, "/other-app/db-password"):
            assert _denied(host_ssm.get_parameter, Name=name, WithDecryption=True)
            assert _denied(host_ssm.get_parameters, Names=[name], WithDecryption=True)
        assert _denied(host_ssm.get_parameters_by_path, Path="/ec2/keypair/", WithDecryption=True)


def test_instance_role_policy_has_no_parameter_read(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    iam = boto3.client("iam")
    role = "simpletrader-instance"
    documents = [iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                 for name in iam.list_role_policies(RoleName=role)["PolicyNames"]]
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"])
        documents.append(version["PolicyVersion"]["Document"])
    actions = [a.lower() for doc in documents for st in doc["Statement"] if st["Effect"] == "Allow"
               for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
    assert actions, "the role grants nothing at all?"
    reads = ("ssm:getparameter", "ssm:getparameters", "ssm:getparametersbypath", "ssm:getparameterhistory")
    assert not [a for a in actions if any(fnmatch.fnmatchcase(r, a) for r in reads)], actions
    # What Session Manager (AWS-StartSSHSession) needs stays.
    assert {"ssmmessages:createcontrolchannel", "ssmmessages:opendatachannel",
            "ssm:updateinstanceinformation"} <= set(actions)
