"""Helpers for the start/stop function tests: a stack in the emulator, a fake clock, call hooks.

The functions' modules live in ``lambda/`` (not a package: ``lambda`` is a
keyword), so the directory goes on ``sys.path`` the way the Lambda runtime
puts the zip root there.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_DIR = ROOT / "lambda"
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))

from st_runtime import Budget  # noqa: E402
from st_settings import Settings  # noqa: E402

from provision import config  # noqa: E402
from provision.trading_calendar import build_calendar  # noqa: E402

IST = timezone(timedelta(hours=5, minutes=30))
# The stack's own SSM documents (provision/documents.py); the functions send nothing else.
SYNC_DOCUMENT = "simpletrader-sync"
EOD_DOCUMENT = "simpletrader-eod"
# Planted in the bucket; must never show up in logs or notifications.
SECRET_API_KEY = "kite-api-secret-5f1d0c9e7b"
SECRET_TOKEN = "access-token-9a8b7c6d5e4f3a2b1c"

SPECIAL_SESSIONS = [
    {"date": "2026-11-07", "name": "Special live session"},  # a Saturday
    {"date": "2026-11-08", "name": "Muhurat trading"},  # a Sunday
]
EXTRA_HOLIDAYS = ["2026-12-31"]


class FakeClock:
    """Wall and monotonic time that only move when the code under test sleeps."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._mono = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self._mono += seconds
        self._now += timedelta(seconds=seconds)

    @property
    def slept(self) -> float:
        return sum(self.sleeps)


@dataclass
class FakeContext:
    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def fake_response(status: int, parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    """What a 'before-call' handler returns to answer a call without sending it."""
    parsed = dict(parsed)
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0})
    return AWSResponse("http://stubbed", status, HTTPHeaders(), None), parsed


def error_response(code: str, message: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    return fake_response(status, {"Error": {"Code": code, "Message": message}})


@dataclass
class Stack:
    """One trading stack in the emulator, and the clients the code under test gets."""

    instance_id: str
    bucket: str
    topic_arn: str
    queue_url: str
    calendar_file: Path
    settings: Settings
    ec2: Any
    ssm: Any
    s3: Any
    sns: Any
    sqs: Any
    calls: dict[str, int] = field(default_factory=dict)

    def state(self) -> str:
        res = self.ec2.describe_instances(InstanceIds=[self.instance_id])
        return str(res["Reservations"][0]["Instances"][0]["State"]["Name"])

    def stop_now(self) -> None:
        self.ec2.stop_instances(InstanceIds=[self.instance_id])
        assert self.state() == "stopped"

    def commands(self) -> list[dict[str, Any]]:
        return list(boto3.client("ssm").list_commands(InstanceId=self.instance_id)["Commands"])

    def notifications(self) -> list[dict[str, str]]:
        """Everything published to the topic so far, read from the subscribed queue."""
        out: list[dict[str, str]] = []
        while True:
            resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=0)
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                body = json.loads(m["Body"])
                out.append({"subject": body.get("Subject", ""), "message": body["Message"]})
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def count(self, client: Any, operation: str) -> Callable[[], int]:
        """Count calls of ``operation`` (e.g. 'ec2.StartInstances') made through ``client``."""
        service, op = operation.split(".")
        key = f"{id(client)}:{operation}"
        self.calls[key] = 0

        def handler(**_: Any) -> None:
            self.calls[key] += 1

        client.meta.events.register(f"before-call.{service}.{op}", handler)
        return lambda: self.calls[key]

    def with_settings(self, **changes: Any) -> Stack:
        self.settings = replace(self.settings, **changes)
        return self


def make_settings(**changes: Any) -> Settings:
    base = Settings(
        instance_id="i-0123456789abcdef0",
        bucket="simpletrader-working-bucket-test",
        topic_arn="arn:aws:sns:ap-south-1:123456789012:simpletrader-events",
        timezone="Asia/Kolkata",
        sync_document=SYNC_DOCUMENT,
        eod_document=EOD_DOCUMENT,
        token_key="secrets/access_token.txt",
        manifest_key="deploy/manifest.json",
        token_fresh_after=(6, 0),
        agent_wait_seconds=300,
        command_timeout_seconds=600,
        waiter_delay_seconds=0.0,
        waiter_max_attempts=10,
    )
    return replace(base, **changes)


_IMAGES: dict[str, str] = {}


def _image_id(ec2: Any) -> str:
    """Any AMI the emulator knows (listing them is slow, so once per endpoint)."""
    endpoint = ec2.meta.endpoint_url
    if endpoint not in _IMAGES:
        _IMAGES[endpoint] = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    return _IMAGES[endpoint]


def new_stack(calendar_file: Path) -> Stack:
    ec2 = boto3.client("ec2")
    image = _image_id(ec2)
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "simpletrader-host"}]}]
    run = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small",
                            TagSpecifications=tags)
    instance_id = run["Instances"][0]["InstanceId"]
    suffix = uuid.uuid4().hex[:10]
    s3 = boto3.client("s3")
    bucket = f"simpletrader-working-bucket-{suffix}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    s3.put_object(Bucket=bucket, Key="secrets/keys.json",
                  Body=json.dumps({"api_key": "kite-key", "api_secret": SECRET_API_KEY}).encode())
    s3.put_object(Bucket=bucket, Key="secrets/access_token.txt", Body=SECRET_TOKEN.encode())
    put_manifest(s3, bucket, datetime.now(timezone.utc))
    sns = boto3.client("sns")
    topic_arn = sns.create_topic(Name=f"st-{suffix}-events")["TopicArn"]
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"st-{suffix}-notifications")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attrs["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    settings = make_settings(instance_id=instance_id, bucket=bucket, topic_arn=topic_arn,
                             calendar_file=calendar_file, stack_name="simpletrader")
    return Stack(instance_id, bucket, topic_arn, queue_url, calendar_file, settings,
                boto3.client("ec2"), boto3.client("ssm"), boto3.client("s3"), boto3.client("sns"), sqs)




def checked_config(extra_holidays: list[str] | None = None,
                   special_sessions: list[dict[str, str]] | None = None) -> config.Config:
    """The repository's stack.yml, checked, with these calendar keys."""
    import yaml

    raw = yaml.safe_load((ROOT / "stack.yml").read_text())
    raw["calendar"]["extra_holidays"] = extra_holidays or []
    raw["calendar"]["special_sessions"] = special_sessions or []
    return config.validate(raw, ROOT / "stack.yml", env={})


def write_calendar(path: Path, years: list[int] | None = None) -> Path:
    cal = build_calendar(checked_config(EXTRA_HOLIDAYS, SPECIAL_SESSIONS), years or [2026, 2027])
    path.write_text(json.dumps(cal, indent=1))
    return path


def budget(clock: FakeClock, remaining_seconds: float | None = None) -> Budget:
    if remaining_seconds is None:
        return Budget(clock, None)
    return Budget.from_context(clock, FakeContext(int(remaining_seconds * 1000)))


def ist(text: str) -> datetime:
    """An IST wall time 'YYYY-MM-DD HH:MM' as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=IST).astimezone(timezone.utc)


def answer_first(client: Any, event: str, times: int,
                 response: Callable[[], tuple[AWSResponse, dict[str, Any]]]) -> list[int]:
    """Answer the first ``times`` calls of ``event`` (e.g. 'before-call.ssm.SendCommand') with ``response``.

    Returns a one-item list counting all calls seen, answered or passed through.
    """
    seen = [0]

    def handler(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        seen[0] += 1
        return response() if seen[0] <= times else None

    client.meta.events.register(event, handler)
    return seen


def force_instance_state(client: Any, state: str, times: int = 10**9, reason: str | None = None) -> list[int]:
    """Make the next ``times`` DescribeInstances answers through ``client`` show ``state``.

    The emulator changes state instantly; this stands in for AWS's transitions
    (stopping, pending -> stopped) as the code under test sees them.
    """
    seen = [0]

    def handler(parsed: dict[str, Any], **_: Any) -> None:
        if seen[0] >= times:
            return
        seen[0] += 1
        for res in parsed.get("Reservations", []):
            for inst in res.get("Instances", []):
                inst["State"] = {"Name": state, "Code": {"pending": 0, "running": 16, "stopping": 64,
                                                         "stopped": 80}.get(state, 0)}
                if reason:
                    inst["StateReason"] = {"Code": "Client.InternalError", "Message": reason}

    client.meta.events.register("after-call.ec2.DescribeInstances", handler)
    return seen


def command_status(client: Any, status: str, stdout: str = "", code: int = -1) -> list[int]:
    """Answer every GetCommandInvocation through ``client`` with ``status`` (the emulator says Success)."""
    seen = [0]

    def handler(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        seen[0] += 1
        body = json.loads(params["body"] or b"{}")
        return fake_response(200, {"CommandId": body.get("CommandId"), "InstanceId": body.get("InstanceId"),
                                   "Status": status, "StatusDetails": status, "ResponseCode": code,
                                   "StandardOutputContent": stdout, "StandardErrorContent": ""})

    client.meta.events.register("before-call.ssm.GetCommandInvocation", handler)
    return seen


def put_manifest(s3: Any, bucket: str, token_published: datetime | None) -> None:
    """A manifest whose token entry says it was published at ``token_published`` (None: no such field)."""
    token = {"role": "token", "key": "secrets/access_token.txt", "size": len(SECRET_TOKEN),
             "sha256": hashlib.sha256(SECRET_TOKEN.encode()).hexdigest()}
    if token_published is not None:
        token["published_at"] = token_published.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {"version": 1, "release": "20260101T000000Z-00000000", "objects": [token]}
    s3.put_object(Bucket=bucket, Key="deploy/manifest.json", Body=json.dumps(manifest).encode())


def token_published_at(stack: Stack, when: datetime) -> None:
    """Rewrite the stack's manifest: the token was published at ``when``."""
    put_manifest(stack.s3, stack.bucket, when)


def record_params(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call (e.g. 'ssm.SendCommand') made through ``client``.

    The emulator's record of SendCommand lists every instance in the region
    as a target, so the exact request is checked here.
    """
    service, op = operation.split(".")
    calls: list[dict[str, Any]] = []

    def handler(params: dict[str, Any], **_: Any) -> None:
        calls.append(json.loads(json.dumps(params)))

    client.meta.events.register(f"provide-client-params.{service}.{op}", handler)
    return calls
