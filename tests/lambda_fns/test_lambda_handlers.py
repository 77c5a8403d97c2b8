"""The handlers as Lambda calls them: environment, event validation, logs, and no secret in any output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import start
import stop
from fnhelpers import EOD_DOCUMENT, SECRET_API_KEY, SECRET_TOKEN, SYNC_DOCUMENT, FakeContext, Stack
from st_runtime import EventError, InvocationFailed, parse_event
from st_settings import SettingsError, load_settings

SCHEDULED_WEDNESDAY = {  # an EventBridge scheduled event, as the rule delivers it
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2026-01-28T03:15:00Z", "region": "ap-south-1",
    "resources": ["arn:aws:events:ap-south-1:123456789012:rule/simpletrader-start"], "detail": {},
}


def env_for(stack: Stack) -> dict[str, str]:
    s = stack.settings
    return {
        "ST_INSTANCE_ID": s.instance_id, "ST_BUCKET": s.bucket, "ST_TOPIC_ARN": s.topic_arn,
        "ST_TIMEZONE": "Asia/Kolkata", "ST_SYNC_DOCUMENT": SYNC_DOCUMENT, "ST_EOD_DOCUMENT": EOD_DOCUMENT,
        "ST_TOKEN_KEY": "secrets/access_token.txt", "ST_MANIFEST_KEY": "deploy/manifest.json",
        "ST_TOKEN_FRESH_AFTER": "06:00",
        "ST_AGENT_WAIT_SECONDS": "300", "ST_COMMAND_TIMEOUT_SECONDS": "600",
        "ST_WAITER_DELAY_SECONDS": "0", "ST_CALENDAR_FILE": str(stack.calendar_file),
        "ST_STACK_NAME": "simpletrader",
    }


@pytest.fixture
def lambda_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    for key, value in env_for(stack).items():
        monkeypatch.setenv(key, value)
    return stack


# --------------------------------------------------------------------------- settings


BASE_ENV = {
    "ST_INSTANCE_ID": "i-0123456789abcdef0", "ST_BUCKET": "b",
    "ST_TOPIC_ARN": "arn:aws:sns:ap-south-1:1:st-events",
    "ST_TIMEZONE": "Asia/Kolkata", "ST_SYNC_DOCUMENT": SYNC_DOCUMENT, "ST_EOD_DOCUMENT": EOD_DOCUMENT,
    "ST_TOKEN_KEY": "secrets/access_token.txt", "ST_MANIFEST_KEY": "deploy/manifest.json",
    "ST_TOKEN_FRESH_AFTER": "06:00",
}


def test_settings_defaults_and_derived_values() -> None:
    s = load_settings(BASE_ENV)
    assert (s.agent_wait_seconds, s.command_timeout_seconds) == (300, 600)
    assert s.token_fresh_after == (6, 0)
    assert s.calendar_file == Path(start.__file__).resolve().parent / "calendar.json"
    assert s.stack_name == "st"  # from the topic name <stack>-events
    with pytest.raises(AttributeError):
        s.bucket = "other"  # type: ignore[misc]


@pytest.mark.parametrize("missing", sorted(BASE_ENV))
def test_each_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        load_settings(env)


@pytest.mark.parametrize(("key", "value"), [
    ("ST_INSTANCE_ID", "web-1"), ("ST_TIMEZONE", "India/Mumbai"), ("ST_TOKEN_FRESH_AFTER", "6am"),
    ("ST_TOPIC_ARN", "simpletrader-events"), ("ST_AGENT_WAIT_SECONDS", "five"),
    ("ST_COMMAND_TIMEOUT_SECONDS", "0"), ("ST_WAITER_DELAY_SECONDS", "-1"),
    ("ST_SYNC_DOCUMENT", "AWS-RunShellScript"), ("ST_EOD_DOCUMENT", "amazon-something"),
    ("ST_SYNC_DOCUMENT", "simpletrader sync"),
])
def test_invalid_variables_are_named(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings(dict(BASE_ENV, **{key: value}))


def test_handler_without_environment_fails_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in BASE_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SettingsError, match="ST_INSTANCE_ID"):
        start.handler({}, None)


# --------------------------------------------------------------------------- events


def test_scheduled_event_is_accepted() -> None:
    event = parse_event(SCHEDULED_WEDNESDAY, allow_force=True)
    assert event.time is not None and event.time.isoformat() == "2026-01-28T03:15:00+00:00"
    assert not event.dry_run and not event.force


@pytest.mark.parametrize(("event", "allow_force", "message"), [
    ({"dryrun": True}, True, "unknown event key.*dryrun"),
    ({"force": True}, False, "unknown event key.*force"),
    ({"dry_run": "yes"}, True, "'dry_run' must be true or false"),
    ({"force": 1}, True, "'force' must be true or false"),
    ({"time": "yesterday"}, True, "not an ISO 8601 time"),
    ({"time": "2026-01-28T08:45:00"}, True, "no UTC offset"),
    ({"time": 1769570100}, True, "must be an ISO 8601 string"),
    (["dry_run"], True, "must be a JSON object"),
])
def test_bad_events_are_clear_errors(event: Any, allow_force: bool, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_event(event, allow_force=allow_force)


def test_handler_rejects_a_bad_event_without_acting_and_says_so(lambda_env: Stack) -> None:
    lambda_env.stop_now()
    with pytest.raises(EventError):
        start.handler({"dry_run": True, "instance": "i-other"}, FakeContext(900_000))
    assert lambda_env.state() == "stopped"
    [note] = lambda_env.notifications()
    assert note["subject"] == "simpletrader start: FAILED before it began"
    assert "unknown event key" in note["message"] and "instance" in note["message"]
    assert "The instance was not started" in note["message"]


def test_a_stop_function_with_broken_settings_tells_the_operator_the_host_still_runs(
        lambda_env: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ST_COMMAND_TIMEOUT_SECONDS", "ten minutes")
    with pytest.raises(SettingsError, match="ST_COMMAND_TIMEOUT_SECONDS"):
        stop.handler({}, FakeContext(900_000))
    assert lambda_env.state() == "running"
    [note] = lambda_env.notifications()
    assert note["subject"] == "simpletrader stop: FAILED before it began"
    assert "ST_COMMAND_TIMEOUT_SECONDS" in note["message"]
    assert "The instance was not stopped: stop it by hand" in note["message"]


# --------------------------------------------------------------------------- handlers end to end


def test_start_then_stop_handlers_through_a_trading_day(lambda_env: Stack) -> None:
    lambda_env.stop_now()
    started = start.handler(SCHEDULED_WEDNESDAY, FakeContext(900_000))
    assert started["outcome"] == "synced" and lambda_env.state() == "running"
    stop_event = dict(SCHEDULED_WEDNESDAY, time="2026-01-28T10:10:00Z")
    stopped = stop.handler(stop_event, FakeContext(900_000))
    assert stopped["outcome"] == "stopped" and lambda_env.state() == "stopped"
    sent = sorted(lambda_env.commands(), key=lambda c: c["RequestedDateTime"])
    assert [(c["DocumentName"], c["Parameters"]) for c in sent] == [
        (SYNC_DOCUMENT, {"executionTimeout": ["600"]}), (EOD_DOCUMENT, {"executionTimeout": ["600"]})]
    subjects = [n["subject"] for n in lambda_env.notifications()]
    assert subjects[0].startswith("simpletrader start 2026-01-28: started and synced")
    assert subjects[1] == "simpletrader stop 2026-01-28: end of day done, instance stopped"
    json.dumps(started), json.dumps(stopped)  # results are JSON for the Lambda response


def test_failure_raises_so_lambda_counts_the_invocation_failed(lambda_env: Stack,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ST_INSTANCE_ID", "i-0000000000000000a")  # no such instance
    with pytest.raises(InvocationFailed, match="start failed"):
        start.handler(SCHEDULED_WEDNESDAY, FakeContext(900_000))
    with pytest.raises(InvocationFailed, match="stop failed"):
        stop.handler({}, FakeContext(900_000))
    subjects = [n["subject"] for n in lambda_env.notifications()]
    assert subjects[0] == "simpletrader start 2026-01-28: FAILED"
    assert subjects[1].endswith(": FAILED, instance not stopped")


def test_one_json_log_line_per_step(lambda_env: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="simpletrader")
    start.handler(SCHEDULED_WEDNESDAY, FakeContext(900_000))
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "simpletrader"]
    steps = [r["step"] for r in records]
    for step in ("invoked", "calendar", "token-check", "instance-state", "command-sent", "command-result",
                 "notified"):
        assert step in steps
    assert all(r["fn"] == "start" for r in records)


def test_planted_secrets_never_reach_logs_output_or_notifications(
        lambda_env: Stack, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)  # everything, botocore's wire logs included
    lambda_env.stop_now()
    results = [
        start.handler(SCHEDULED_WEDNESDAY, FakeContext(900_000)),
        start.handler({"dry_run": True, "force": True}, FakeContext(900_000)),
        stop.handler(dict(SCHEDULED_WEDNESDAY, time="2026-01-28T10:10:00Z"), FakeContext(900_000)),
    ]
    monkeypatch.setenv("ST_INSTANCE_ID", "i-0000000000000000a")
    with pytest.raises(InvocationFailed):  # and on a failure path
        stop.handler({}, FakeContext(900_000))
    captured = capsys.readouterr()
    notes = lambda_env.notifications()
    assert len(notes) == 3 and len(caplog.records) > 20
    haystacks = [caplog.text, captured.out, captured.err, json.dumps(results), json.dumps(notes)]
    for secret in (SECRET_API_KEY, SECRET_TOKEN):
        for text in haystacks:
            assert secret not in text
