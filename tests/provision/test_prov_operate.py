"""`provision start` / `stop` outside the schedule: the functions' own code, run here, against the emulator.

The SSM agent's answers are canned with a botocore hook where the test needs
a particular outcome; moto itself reports every command as a success.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from provhelpers import Runner, invocation, respond_once


@pytest.fixture
def stack(run: Runner) -> dict[str, Any]:
    """The stack, up; its topic's notifications go to a queue the tests read."""
    assert run("up", "--yes").code == 0
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="operator-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = next(t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"])
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    instance = boto3.client("ec2").describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]
    return {"queue": queue, "instance": instance}


def subjects(queue: str) -> list[str]:
    sqs = boto3.client("sqs")
    found = []
    for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        found.append(json.loads(m["Body"])["Subject"])
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return found


def state(instance: str) -> str:
    return str(boto3.client("ec2").describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
               ["State"]["Name"])


def sent(instance: str) -> list[str]:
    """The SSM documents sent to the instance, oldest first."""
    return [c["DocumentName"] for c in boto3.client("ssm").list_commands(InstanceId=instance)["Commands"]]


def today() -> str:
    return dt.datetime.now(ZoneInfo("Asia/Kolkata")).date().isoformat()


def test_stop_then_start_outside_the_schedule(run: Runner, stack: dict[str, Any]) -> None:
    stop = run("stop")
    assert stop.code == 0, stop.err
    assert state(stack["instance"]) == "stopped"
    assert sent(stack["instance"]) == []  # no --eod: the routine did not run
    assert "eod-skipped" in stop.out and "the end-of-day routine did not run" in stop.out
    assert subjects(stack["queue"]) == [f"simpletrader stop {today()} (manual): instance stopped, end of day not run"]

    start = run("start", "--wait-ready")
    assert start.code == 0, start.err
    assert state(stack["instance"]) == "running"
    assert sent(stack["instance"]) == []  # no --sync
    assert f"Host {stack['instance']} is ready for Session Manager and Ansible" in start.out
    [subject] = subjects(stack["queue"])
    assert subject.startswith(f"simpletrader start {today()} (manual): started, not synced")


def test_start_sync_and_stop_eod_run_the_routines(run: Runner, stack: dict[str, Any]) -> None:
    assert run("stop").code == 0
    subjects(stack["queue"])
    ready = invocation("Success", "sync: ready release=r1 venv=abc\n")
    start = run("start", "--sync", hooks=[("before-send", ready)])
    assert start.code == 0, start.err
    assert sent(stack["instance"]) == ["simpletrader-sync"]
    assert "command-result" in start.out and "sync: ready release=r1 venv=abc" in start.out
    assert subjects(stack["queue"])[0].startswith(f"simpletrader start {today()} (manual): started and synced")

    done = invocation("Success", "eod: uploaded 3 files (logs/2026-11-30/, ledger/)\n")
    stop = run("stop", "--eod", hooks=[("before-send", done)])
    assert stop.code == 0, stop.err
    assert sent(stack["instance"])[-1] == "simpletrader-eod"
    assert state(stack["instance"]) == "stopped"
    assert subjects(stack["queue"]) == [f"simpletrader stop {today()} (manual): end of day done, instance stopped"]


def test_manual_start_ignores_the_calendar(run: Runner, stack: dict[str, Any]) -> None:
    holiday = today()

    def calendar(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"exchange": "XNSE", "timezone": "Asia/Kolkata", "weekdays": [0, 1, 2, 3, 4, 5, 6],
                "covered_years": [int(holiday[:4])], "holidays": {holiday: "A holiday"}, "special_sessions": {}}

    run.calendar_builder = calendar
    assert run("stop").code == 0
    start = run("start")
    assert start.code == 0, start.err
    assert "reason=holiday" in start.out and "force=True" in start.out
    assert state(stack["instance"]) == "running"


def test_a_failed_sync_fails_the_command_after_notifying(run: Runner, stack: dict[str, Any]) -> None:
    failed = invocation("Failed", "sync: FAILED sha256 mismatch for deploy/releases/r/code.tar.gz\n")
    result = run("start", "--sync", hooks=[("before-send", failed)])
    assert result.code == 1
    assert "sync: FAILED sha256 mismatch" in result.err
    assert "Notified: simpletrader start" in result.err and "FAILED" in result.err
    assert "Traceback" not in result.err


def test_wait_ready_gives_up_with_what_to_check(run: Runner, stack: dict[str, Any]) -> None:
    nobody = respond_once("ssm.DescribeInstanceInformation", 200, {},
                          json.dumps({"InstanceInformationList": []}).encode(), times=999)
    result = run("start", "--wait-ready", hooks=[("before-send", nobody)])
    assert result.code == 1
    assert f"the SSM agent of {stack['instance']} is not online after 300s (status: not registered)" in result.err
    assert "instance role" in result.err


def test_start_and_stop_before_up_say_what_to_do(run: Runner) -> None:
    for command in ("start", "stop"):
        result = run(command)
        assert result.code == 1
        assert f"function simpletrader-{command} does not exist; run `python -m provision up` first" in result.err
