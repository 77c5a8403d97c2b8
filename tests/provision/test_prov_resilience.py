"""Crash-resume and throttling, injected through botocore event hooks on the product's own clients."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from provhelpers import FULL, MUTATING, Raw, Runner, assert_no_orphans, live_counts


class Crash(Exception):
    """Stands in for the process dying right after AWS accepted a call."""


def key_pairs_have_private_keys() -> None:
    """Every key pair's private key is in SSM (final or pending parameter) at every moment."""
    from provision.keypair import public_key_of

    ec2, ssm = boto3.client("ec2"), boto3.client("ssm")
    params = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/ec2/keypair/"]}]
    )["Parameters"]
    publics = set()
    for p in params:
        value = ssm.get_parameter(Name=p["Name"], WithDecryption=True)["Parameter"]["Value"]
        publics.add(" ".join(public_key_of(value).split()[:2]))
    for pair in ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]:
        assert " ".join(pair["PublicKey"].split()[:2]) in publics, (
            f"key pair {pair['KeyPairId']} has no private key"
        )


def test_crash_after_every_mutating_call_then_resume(run: Runner) -> None:
    """Each run makes one more change than the last, then 'dies'; the next run finishes the job."""
    crashed_after: list[str] = []

    def crash_after_first_mutation(event_name: str, **kwargs: Any) -> None:
        op = event_name.split(".")[-1]
        if MUTATING.match(op):
            crashed_after.append(f"{event_name.split('.')[1]}.{op}")
            raise Crash(op)

    for _ in range(200):
        try:
            result = run("up", "--yes", hooks=[("after-call", crash_after_first_mutation)])
        except Crash:
            key_pairs_have_private_keys()
            continue
        assert result.code == 0, result.out + result.err
        break
    else:
        pytest.fail("up never converged")
    assert len(crashed_after) > 30, crashed_after
    # Crashes hit every resource kind, including between the key pair's steps.
    for op in (
        "ssm.PutParameter",
        "ec2.ImportKeyPair",
        "ec2.RunInstances",
        "lambda.CreateFunction",
        "eventbridge.PutRule",
        "s3.CreateBucket",
        "iam.AddRoleToInstanceProfile",
    ):
        assert op in crashed_after, (op, crashed_after)
    assert live_counts() == FULL
    assert_no_orphans()
    key_pairs_have_private_keys()
    assert run("plan", "--detailed-exitcode").code == 0


EC2_THROTTLE = (
    503,
    {},
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded'
    b"</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>t</RequestID></Response>",
)
IAM_THROTTLE = (
    400,
    {"Content-Type": "text/xml"},
    b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
    b"</Error><RequestId>t</RequestId></ErrorResponse>",
)
LAMBDA_THROTTLE = (
    429,
    {"x-amzn-ErrorType": "TooManyRequestsException", "Content-Type": "application/json"},
    b'{"message": "Rate exceeded", "Reason": "CallerRateLimitExceeded"}',
)


class Throttler:
    """Answers the first ``k`` requests of each listed operation with a throttling error, then passes."""

    def __init__(self, k: int, responses: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.k = k
        self.responses = responses
        self.seen: dict[str, int] = {}

    def __call__(self, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        op = ".".join(event_name.split(".")[1:])
        if op not in self.responses:
            return None
        self.seen[op] = self.seen.get(op, 0) + 1
        if self.seen[op] > self.k:
            return None
        status, headers, body = self.responses[op]
        return AWSResponse(request.url, status, headers, Raw(body))  # type: ignore[arg-type]


THROTTLED = {
    "ec2.DescribeVpcs": EC2_THROTTLE,
    "iam.CreateRole": IAM_THROTTLE,
    "lambda.CreateFunction": LAMBDA_THROTTLE,
}


def test_throttling_within_the_retry_budget_succeeds(run: Runner) -> None:
    run.max_attempts = 2  # keeps botocore's backoff (with jitter) short
    # botocore's retries={"max_attempts": N} allows N retries after the first attempt.
    throttler = Throttler(run.max_attempts, THROTTLED)
    result = run("up", "--yes", hooks=[("before-send", throttler)])
    assert result.code == 0, result.err
    # Every listed operation was throttled k times and then went through.
    assert {op: n for op, n in throttler.seen.items() if n > throttler.k}.keys() == THROTTLED.keys()
    assert live_counts() == FULL
    assert run("plan", "--detailed-exitcode").code == 0


def test_throttling_past_the_limit_fails_clearly_and_a_rerun_converges(run: Runner) -> None:
    run.max_attempts = 2
    throttler = Throttler(run.max_attempts + 1, {"ec2.CreateSubnet": EC2_THROTTLE})
    result = run("up", "--yes", hooks=[("before-send", throttler)])
    assert result.code == 1, (throttler.seen, result.out)
    assert "Traceback" not in result.err
    assert "throttling CreateSubnet (RequestLimitExceeded)" in result.err
    assert f"gave up after {run.max_attempts + 1} attempts" in result.err
    assert "re-run" in result.err
    errors = [ln for ln in result.err.strip().splitlines() if not ln.startswith("hint: ")]  # doctor's hints
    assert len(errors) <= 2
    assert live_counts()["vpc"] == 1 and live_counts()["subnet"] == 0  # stopped where it failed
    again = run("up", "--yes")
    assert again.code == 0, again.err
    assert live_counts() == FULL


def test_a_host_terminated_outside_down_is_replaced_despite_the_launch_token(run: Runner) -> None:
    """AWS keeps a RunInstances client token for a day or more after its instance is terminated, and answers a
    launch with that token with the dead instance (the emulator ignores tokens: the answer is played here)."""
    from botocore.awsrequest import HTTPHeaders

    assert run("up", "--yes").code == 0
    ec2 = boto3.client("ec2")
    live = [{"Name": "tag:Stack", "Values": ["simpletrader"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    [old] = [i for r in ec2.describe_instances(Filters=live)["Reservations"] for i in r["Instances"]]
    ec2.terminate_instances(InstanceIds=[old["InstanceId"]])  # in the console, say
    tokens: list[str] = []

    def run_instances(params: dict[str, Any], **_: Any) -> Any:
        tokens.append(params["body"]["ClientToken"])
        if len(tokens) == 1:  # AWS's idempotent answer: the instance launched under this token, terminated
            dead = {"InstanceId": old["InstanceId"], "State": {"Code": 48, "Name": "terminated"}}
            return (AWSResponse("https://ec2", 200, HTTPHeaders(), None),
                    {"Instances": [dead], "ResponseMetadata": {"HTTPStatusCode": 200}})
        return None

    up = run("up", "--yes", hooks=[("before-call.ec2.RunInstances", run_instances)])
    assert up.code == 0, up.err
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    [new] = [i for r in ec2.describe_instances(Filters=live)["Reservations"] for i in r["Instances"]]
    assert new["InstanceId"] != old["InstanceId"] and new["State"]["Name"] == "running"
    assert run("plan", "--detailed-exitcode").code == 0


def key_parameters() -> dict[str, str]:
    ssm = boto3.client("ssm")
    names = [p["Name"] for p in ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/ec2/keypair/"]}])["Parameters"]]
    return {n: ssm.get_parameter(Name=n, WithDecryption=True)["Parameter"]["Value"] for n in names}


def test_a_key_pair_deleted_by_hand_while_the_host_runs_keeps_the_key_the_host_trusts(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    [(old_name, old_key)] = key_parameters().items()
    boto3.client("ec2").delete_key_pair(KeyName="simpletrader-key")

    plan = run("plan")
    assert f"keeping {old_name}: the host was launched before this stack's key pair was made" in plan.out
    assert "~ instance" not in plan.out  # the new key pair takes the same name: the host is not changed
    up = run("up", "--yes")
    assert up.code == 0, up.err
    after = key_parameters()
    assert after[old_name] == old_key  # the only key the running host trusts is still there
    assert len(after) == 2  # and the new key pair's
    assert run("plan", "--detailed-exitcode").code == 0

    # The next morning the start function starts the host again: EC2's LaunchTime is then that start, and
    # the host still trusts only the old key.
    later = datetime.now(timezone.utc) + timedelta(hours=12)

    def restarted(parsed: dict[str, Any], **_: Any) -> None:
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                instance["LaunchTime"] = later

    again = run("up", "--yes", hooks=[("after-call.ec2.DescribeInstances", restarted)])
    assert again.code == 0, again.err
    assert key_parameters()[old_name] == old_key

    assert run("down", "--yes").code == 0  # the host goes, and the old key with it
    assert key_parameters() == {}
