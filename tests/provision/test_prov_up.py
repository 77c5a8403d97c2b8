"""up / plan / down against the emulator: creation, idempotence, outputs, key, down-then-up."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
from provhelpers import FULL, ROOT, Runner, assert_no_orphans, live_counts


def assert_key_pair_recoverable() -> None:
    """Every key pair has its private key under /ec2/keypair/<id>, and it matches the public key."""
    ec2, ssm = boto3.client("ec2"), boto3.client("ssm")
    from provision.keypair import public_key_of

    for pair in ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]:
        value = ssm.get_parameter(Name=f"/ec2/keypair/{pair['KeyPairId']}", WithDecryption=True)["Parameter"]
        assert value["Type"] == "SecureString"
        assert public_key_of(value["Value"]).split()[:2] == pair["PublicKey"].split()[:2]


def test_up_from_empty_creates_everything_and_second_up_changes_nothing(run: Runner) -> None:
    first = run("up", "--yes")
    assert first.code == 0, first.err
    assert "Plan: 20 to add, 0 to change, 0 to destroy." in first.out
    assert "instance: created" in first.out  # a progress line per resource
    assert live_counts() == FULL
    assert_no_orphans()
    assert_key_pair_recoverable()
    assert_security_properties()

    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in plan.out

    second = run("up", "--yes")
    assert second.code == 0, second.err
    assert run.last_recorder is not None
    assert run.last_recorder.mutating() == []
    assert run.last_recorder.calls, "the recorder saw no call at all; the hook is not wired"
    assert live_counts() == FULL


def test_plan_is_read_only_and_reports_changes(run: Runner) -> None:
    result = run("plan", "--detailed-exitcode")
    assert result.code == 2
    assert "+ instance (simpletrader-host)" in result.out
    assert result.out.strip().endswith("Plan: 20 to add, 0 to change, 0 to destroy.")
    assert run.last_recorder is not None and run.last_recorder.mutating() == []
    as_json = run("plan", "--json")
    data = json.loads(as_json.out)
    assert data["summary"] == {"add": 20, "change": 0, "destroy": 0}
    assert {c["address"] for c in data["changes"]} >= {"bucket", "keypair", "instance", "schedule.start"}
    assert live_counts()["vpc"] == 0


def test_up_asks_and_a_refusal_changes_nothing(run: Runner) -> None:
    result = run("up", answer="no")
    assert result.code == 1
    assert "Cancelled" in result.out
    assert live_counts()["vpc"] == 0


def assert_security_properties() -> None:
    """The security properties of the issue, read from the emulator's state."""
    ec2 = boto3.client("ec2")
    stack = [{"Name": "tag:Stack", "Values": ["simpletrader"]}]
    sg = ec2.describe_security_groups(Filters=stack)["SecurityGroups"][0]
    assert sg["IpPermissions"] == []  # no inbound rule at all by default
    inst = [i for r in ec2.describe_instances(Filters=stack)["Reservations"] for i in r["Instances"]][0]
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["IamInstanceProfile"]["Arn"].endswith("instance-profile/simpletrader-instance")
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags == {
        "Project": "simpletrader",
        "Stack": "simpletrader",
        "ManagedBy": "simpletrader-provision",
        "Name": "simpletrader-host",
        "Role": "trading-host",
    }
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}])
    assert vols["Volumes"] and all(v["Encrypted"] for v in vols["Volumes"])
    attrs = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
    import base64

    user_data = base64.b64decode(attrs["UserData"]["Value"]).decode()
    assert "secret" not in user_data.lower().replace("no secrets", "") and "token" not in user_data.lower()

    s3 = boto3.client("s3")
    name = "simpletrader-working-bucket"
    pab = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert all(
        pab[k] for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    )
    enc = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert enc[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    policy = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
    deny = [st for st in policy["Statement"] if st["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    from provision.iam import STAR_RESOURCE_SIDS

    iam = boto3.client("iam")
    for role in ("simpletrader-instance", "simpletrader-scheduler"):
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert names == [f"{role}-access"]
        doc = iam.get_role_policy(RoleName=role, PolicyName=names[0])["PolicyDocument"]
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert all("*" not in a for a in actions), st
            if st["Resource"] == "*" or "*" in st["Resource"]:
                assert st["Sid"] in STAR_RESOURCE_SIDS, st
    # No AWS managed policy: AmazonSSMManagedInstanceCore would let the host read every parameter.
    assert iam.list_attached_role_policies(RoleName="simpletrader-instance")["AttachedPolicies"] == []
    assert iam.list_attached_role_policies(RoleName="simpletrader-scheduler")["AttachedPolicies"] == []
    sched = iam.get_role_policy(RoleName="simpletrader-scheduler", PolicyName="simpletrader-scheduler-access")
    start_stop = [s for s in sched["PolicyDocument"]["Statement"] if s["Sid"] == "StartStopTheHost"][0]
    assert start_stop["Resource"] == [f"arn:aws:ec2:ap-south-1:123456789012:instance/{inst['InstanceId']}"]
    # The functions read one object, the manifest, and no secret: S3 access is exactly this.
    s3_statements = [(st["Action"], st["Resource"]) for st in sched["PolicyDocument"]["Statement"]
                     if "s3:" in json.dumps(st["Action"])]
    assert s3_statements == [(["s3:GetObject"], [f"arn:aws:s3:::{name}/deploy/manifest.json"])]

    lam = boto3.client("lambda")
    for fn in ("start", "stop"):
        conf = lam.get_function_configuration(FunctionName=f"simpletrader-{fn}")
        assert conf["Handler"] == f"{fn}.handler"
        assert conf["Runtime"] == "python3.12"
        env = conf["Environment"]["Variables"]
        assert set(env) == {
            "ST_INSTANCE_ID",
            "ST_BUCKET",
            "ST_TOPIC_ARN",
            "ST_TIMEZONE",
            "ST_SYNC_DOCUMENT",
            "ST_EOD_DOCUMENT",
            "ST_TOKEN_KEY",
            "ST_MANIFEST_KEY",
            "ST_TOKEN_FRESH_AFTER",
            "ST_TOKEN_CHECK",
            "ST_AGENT_WAIT_SECONDS",
            "ST_COMMAND_TIMEOUT_SECONDS",
        }
        assert env["ST_INSTANCE_ID"] == inst["InstanceId"]
        assert env["ST_TOKEN_KEY"] == "secrets/access_token.txt"
        assert env["ST_MANIFEST_KEY"] == "deploy/manifest.json"
        assert (env["ST_SYNC_DOCUMENT"], env["ST_EOD_DOCUMENT"]) == ("simpletrader-sync", "simpletrader-eod")
        policy = json.loads(lam.get_policy(FunctionName=f"simpletrader-{fn}")["Policy"])
        st = policy["Statement"][0]
        assert st["Principal"] == {"Service": "events.amazonaws.com"}
        assert st["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f":rule/simpletrader-{fn}")
    events = boto3.client("events")
    assert events.describe_rule(Name="simpletrader-start")["ScheduleExpression"] == "cron(15 3 ? * MON-FRI *)"
    assert events.describe_rule(Name="simpletrader-stop")["ScheduleExpression"] == "cron(10 10 ? * MON-FRI *)"
    target = events.list_targets_by_rule(Rule="simpletrader-start")["Targets"]
    assert [t["Arn"] for t in target] == [
        lam.get_function(FunctionName="simpletrader-start")["Configuration"]["FunctionArn"]
    ]
    addr = ec2.describe_addresses(Filters=stack)["Addresses"][0]
    assert addr["InstanceId"] == inst["InstanceId"]


def test_outputs_and_key(run: Runner, tmp_path: Path) -> None:
    assert run("up", "--yes").code == 0
    out = run("outputs", "--json")
    assert out.code == 0, out.err
    data: dict[str, Any] = json.loads(out.out)
    addr = boto3.client("ec2").describe_addresses()["Addresses"][0]["PublicIp"]
    assert data["public_ip"] == addr
    assert data["bucket"] == "simpletrader-working-bucket"
    assert data["key_parameter"].startswith("/ec2/keypair/key-")
    # access: ssm (the default): the host is its instance id, reached through the Session Manager tunnel
    tunnel = f"-o ProxyCommand='{ROOT}/inventory/ssm-tunnel --region ap-south-1 %h %p'"
    assert data["ssh"] == f"ssh -i simpletrader-key.pem {tunnel} ec2-user@{data['instance_id']}"
    assert data["functions"] == {"start": "simpletrader-start", "stop": "simpletrader-stop"}

    pem = tmp_path / "k.pem"
    key = run("key", "--out", str(pem))
    assert key.code == 0, key.err
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o400
    host = f"ec2-user@{data['instance_id']}"
    assert f"ssh -i {pem} {tunnel} {host}" in key.out
    assert f"scp -i {pem} {tunnel} <local-file-path> {host}:<remote-file-path>" in key.out
    secret = pem.read_text()
    assert secret not in key.out + key.err
    from provision.keypair import public_key_of

    pair = boto3.client("ec2").describe_key_pairs(IncludePublicKey=True)["KeyPairs"][0]
    assert public_key_of(secret).split()[:2] == pair["PublicKey"].split()[:2]
    again = run("key", "--out", str(pem))
    assert again.code == 1 and "already exists" in again.err
    assert pem.read_text() == secret

    status = run("status")
    assert status.code == 0, status.err
    assert "next start" in status.out and "Asia/Kolkata" in status.out and addr in status.out


def make_bucket_with_objects(*keys: str) -> None:
    """A bucket the operator made by hand (as the original README told them to), with data in it."""
    s3 = boto3.client("s3")
    s3.create_bucket(
        Bucket="simpletrader-working-bucket", CreateBucketConfiguration={"LocationConstraint": "ap-south-1"}
    )
    s3.put_bucket_tagging(
        Bucket="simpletrader-working-bucket", Tagging={"TagSet": [{"Key": "Owner", "Value": "ajith"}]}
    )
    for key in keys:
        s3.put_object(Bucket="simpletrader-working-bucket", Key=key, Body=b"x")


def test_down_keeps_bucket_and_ip_then_up_again(run: Runner) -> None:
    make_bucket_with_objects("deploy/x")
    first = run("up", "--yes")
    assert first.code == 0, first.err
    assert "+ bucket" not in first.out and "~ bucket" in first.out  # adopted, not created
    s3 = boto3.client("s3")
    assert s3.get_object(Bucket="simpletrader-working-bucket", Key="deploy/x")["Body"].read() == b"x"
    tagset = s3.get_bucket_tagging(Bucket="simpletrader-working-bucket")["TagSet"]
    assert {"Key": "Owner", "Value": "ajith"} in tagset  # the operator's own tag survives adoption
    assert run("plan", "--detailed-exitcode").code == 0
    ip = boto3.client("ec2").describe_addresses()["Addresses"][0]["PublicIp"]
    refused = run("down", answer="no")
    assert refused.code == 1 and live_counts() == FULL
    # Before it asks: what goes with the host's disk, and (the host runs) what to do first.
    assert "The host's disk is deleted with it: trade data no end of day uploaded" in refused.out
    assert "The host is running: if it traded today, run `python -m provision stop --eod` first" in refused.out
    down = run("down", "--yes")
    assert down.code == 0, down.err
    assert "The host's disk is deleted with it" in down.out  # said with --yes too
    left = {k: v for k, v in live_counts().items() if v}
    assert left == {"bucket": 1, "eip": 1}
    assert run("plan", "--detailed-exitcode").code == 2
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert live_counts() == FULL
    assert boto3.client("ec2").describe_addresses()["Addresses"][0]["PublicIp"] == ip  # same broker IP
    assert run("plan", "--detailed-exitcode").code == 0


def test_down_refuses_non_empty_bucket_without_force(run: Runner) -> None:
    make_bucket_with_objects("ledger/l.csv", "logs/2026-11-27/t.log")
    assert run("up", "--yes").code == 0
    refused = run("down", "--yes", "--delete-bucket", "--release-ip")
    assert refused.code == 1
    assert "not empty" in refused.err and "--force" in refused.err
    assert live_counts() == FULL  # refused before deleting anything
    done = run("down", "--yes", "--delete-bucket", "--release-ip", "--force")
    assert done.code == 0, done.err
    assert not any(live_counts().values()), live_counts()


@pytest.mark.parametrize("email", ["ops@example.com"])
def test_email_subscription(run: Runner, stack_config: Path, email: str) -> None:
    import yaml

    raw = yaml.safe_load(stack_config.read_text())
    raw["notifications"]["email"] = email
    stack_config.write_text(yaml.safe_dump(raw))
    assert run("up", "--yes").code == 0
    sns = boto3.client("sns")
    topic = [t["TopicArn"] for t in sns.list_topics()["Topics"]][0]
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", email)]
    assert run("plan", "--detailed-exitcode").code == 0


def test_status_skips_exchange_holidays(run: Runner) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    today = dt.datetime.now(ZoneInfo("Asia/Kolkata")).date()
    # Every weekday from today on is a holiday except the last one listed: that is the next start.
    days = [today + dt.timedelta(days=i) for i in range(12)]
    weekdays = [d for d in days if d.weekday() < 5]
    open_day = weekdays[-1]
    closed = {d.isoformat(): "Test holiday" for d in weekdays[:-1]}

    def builder(cfg: Any, years: list[int]) -> dict[str, Any]:
        return {
            "exchange": "XNSE",
            "timezone": "Asia/Kolkata",
            "weekdays": [0, 1, 2, 3, 4],
            "covered_years": years,
            "holidays": closed,
            "special_sessions": {},
        }

    run.calendar_builder = builder
    status = run("status")
    assert status.code == 0, status.err
    assert f"next start  {open_day:%a %Y-%m-%d} 08:45 Asia/Kolkata" in status.out
    # The day before the open one is always ahead of now, so it is always skipped.
    assert f"{weekdays[-2].isoformat()} skipped: Test holiday (exchange holiday)" in status.out
