"""The stop function against the emulator: end-of-day routine first, then stop, whatever happens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import stop
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from fnhelpers import (
    EOD_DOCUMENT,
    FakeClock,
    Stack,
    answer_first,
    budget,
    command_status,
    error_response,
    fake_response,
    force_instance_state,
    ist,
    record_params,
)
from st_runtime import REPORT_RESERVE_SECONDS, Event, InvocationFailed

from provision.config import COMMAND_TIMEOUT_MAX
from provision.lambdas import TIMEOUT_SECONDS

DAY = "2026-01-28"


def run(stack: Stack, clock: FakeClock | None = None, *, dry_run: bool = False,
        remaining: float | None = None, event_time: datetime | None = None) -> dict[str, Any]:
    clock = clock or FakeClock(ist(f"{DAY} 15:40") + timedelta(seconds=3))
    return stop.run_stop(event=Event(time=event_time or ist(f"{DAY} 15:40"), dry_run=dry_run),
                         settings=stack.settings, ec2=stack.ec2, ssm=stack.ssm, sns=stack.sns, clock=clock,
                         budget=budget(clock, remaining))


def run_failing(stack: Stack, clock: FakeClock | None = None, **kw: Any) -> dict[str, Any]:
    with pytest.raises(InvocationFailed) as info:
        run(stack, clock, **kw)
    return info.value.result


def test_stop_when_running_runs_eod_then_stops(stack: Stack) -> None:
    order: list[str] = []
    stack.ssm.meta.events.register("before-call.ssm.SendCommand", lambda **_: order.append("eod"))
    stack.ec2.meta.events.register("before-call.ec2.StopInstances", lambda **_: order.append("stop"))
    sent = record_params(stack.ssm, "ssm.SendCommand")
    result = run(stack)
    assert result["outcome"] == "stopped" and result["ok"]
    assert result["state_before"] == "running" and result["state_after"] == "stopped"
    assert stack.state() == "stopped"
    assert order == ["eod", "stop"]
    [cmd] = stack.commands()
    assert cmd["DocumentName"] == EOD_DOCUMENT  # the stack's own document, never AWS-RunShellScript
    assert stack.instance_id in cmd["InstanceIds"]
    assert [(c["InstanceIds"], c["DocumentName"], c["Parameters"]) for c in sent] == [
        ([stack.instance_id], EOD_DOCUMENT, {"executionTimeout": ["600"]})]
    [note] = stack.notifications()
    assert note["subject"] == f"simpletrader stop {DAY}: end of day done, instance stopped"
    assert "running -> stopped" in note["message"]


def test_stop_when_stopped_is_a_reported_no_op(stack: Stack) -> None:
    stack.stop_now()
    stops = stack.count(stack.ec2, "ec2.StopInstances")
    result = run(stack)
    assert result["outcome"] == "already-stopped" and result["ok"]
    assert stops() == 0 and stack.commands() == []
    [note] = stack.notifications()
    assert note["subject"] == f"simpletrader stop {DAY}: instance already stopped"


def test_stop_while_stopping_waits_and_reports(stack: Stack) -> None:
    stack.stop_now()
    force_instance_state(stack.ec2, "stopping", times=2)
    result = run(stack)
    assert result["outcome"] == "already-stopped"
    assert result["state_before"] == "stopping" and result["state_after"] == "stopped"
    assert stack.commands() == []


def test_stop_while_pending_waits_for_running_then_runs_eod(stack: Stack) -> None:
    force_instance_state(stack.ec2, "pending", times=2)
    sent = record_params(stack.ssm, "ssm.SendCommand")
    result = run(stack)
    assert result["state_before"] == "pending" and result["outcome"] == "stopped"
    assert len(sent) == 1 and stack.state() == "stopped"


def test_failed_eod_still_stops_and_fails_the_invocation(stack: Stack) -> None:
    command_status(stack.ssm, "Failed", stdout="eod: FAILED upload of trade_logs", code=2)
    result = run_failing(stack)
    assert result["outcome"] == "eod-failed" and not result["ok"]
    assert result["state_after"] == "stopped" and stack.state() == "stopped"
    assert "eod: FAILED upload of trade_logs" in result["error"]
    [note] = stack.notifications()
    assert note["subject"] == f"simpletrader stop {DAY}: end of day FAILED, instance stopped"
    assert "stopped anyway" in note["message"] and "exit 2" in note["message"]


def test_eod_past_the_deadline_still_stops(stack: Stack) -> None:
    stack.with_settings(command_timeout_seconds=120)
    command_status(stack.ssm, "InProgress")
    clock = FakeClock(ist(f"{DAY} 15:40"))
    result = run_failing(stack, clock)
    assert result["command"]["status"] == "DeadlineExceeded"
    assert 119 <= clock.slept <= 120
    assert stack.state() == "stopped" and result["outcome"] == "eod-failed"


def test_eod_deadline_leaves_time_to_stop_within_the_function_timeout(stack: Stack) -> None:
    command_status(stack.ssm, "InProgress")
    clock = FakeClock(ist(f"{DAY} 15:40"))
    result = run_failing(stack, clock, remaining=300.0)
    # 300s left: 20s reporting reserve and 120s to stop leave 160s for the routine.
    assert clock.slept <= 160.0
    assert stack.state() == "stopped" and result["outcome"] == "eod-failed"


def test_a_poll_that_fails_transiently_does_not_stop_the_host_mid_upload(stack: Stack) -> None:
    # Throttled, a 503 and no answer at all (each past botocore's own retries): the routine is still
    # uploading on the host, so the function asks again instead of stopping the instance under it.
    answers = [error_response("ThrottlingException", "Rate exceeded"),
               error_response("InternalServerError", "try later", status=503)]
    polls: list[str] = []

    def flaky(**_: Any) -> Any:
        polls.append("poll")
        if len(polls) == 3:
            raise EndpointConnectionError(endpoint_url="https://ssm.ap-south-1.amazonaws.com/")
        return answers[len(polls) - 1] if len(polls) <= len(answers) else None

    stack.ssm.meta.events.register("before-call.ssm.GetCommandInvocation", flaky)
    stack.ec2.meta.events.register("before-call.ec2.StopInstances", lambda **_: polls.append("stop"))
    clock = FakeClock(ist(f"{DAY} 15:40"))
    result = run(stack, clock)
    assert result["outcome"] == "stopped" and result["ok"]
    assert result["command"]["status"] == "Success"
    assert polls == ["poll", "poll", "poll", "poll", "stop"]
    assert stack.state() == "stopped"


def test_a_poll_that_is_refused_is_reported_and_still_stops(stack: Stack) -> None:
    # Not transient (the role may not read the command): the day is reported failed, the host stopped.
    answer_first(stack.ssm, "before-call.ssm.GetCommandInvocation", 10**6,
                 lambda: error_response("AccessDeniedException", "not authorized to GetCommandInvocation"))
    result = run_failing(stack)
    assert result["outcome"] == "eod-failed" and "AccessDeniedException" in result["error"]
    assert stack.state() == "stopped"


def test_missing_credentials_while_polling_fail_at_once_not_at_the_deadline(stack: Stack) -> None:
    def no_credentials(**_: Any) -> Any:
        raise NoCredentialsError()

    stack.ssm.meta.events.register("before-call.ssm.GetCommandInvocation", no_credentials)
    clock = FakeClock(ist(f"{DAY} 15:40"))
    result = run_failing(stack, clock)
    assert result["outcome"] == "eod-failed" and "credentials" in result["error"].lower()
    assert clock.slept < 60  # not polled until the 600 s deadline
    assert stack.state() == "stopped"


def test_the_longest_command_timeout_the_config_allows_is_kept(stack: Stack) -> None:
    # The config's maximum is the stop function's own room: a routine that takes nearly all of it finishes,
    # is read, and the instance is stopped inside the function's 900 s.
    assert COMMAND_TIMEOUT_MAX == TIMEOUT_SECONDS - REPORT_RESERVE_SECONDS - stop.STOP_RESERVE_SECONDS
    stack.with_settings(command_timeout_seconds=COMMAND_TIMEOUT_MAX)
    clock = FakeClock(ist(f"{DAY} 15:40"))
    started = clock.monotonic()

    def routine(params: dict[str, Any], **_: Any) -> Any:
        done = clock.monotonic() - started >= COMMAND_TIMEOUT_MAX - 15
        status = "Success" if done else "InProgress"
        return fake_response(200, {"Status": status, "StatusDetails": status, "ResponseCode": 0 if done else -1,
                                    "StandardOutputContent": "eod: uploaded 2 files\n" if done else ""})

    stack.ssm.meta.events.register("before-call.ssm.GetCommandInvocation", routine)
    result = run(stack, clock, remaining=float(TIMEOUT_SECONDS))
    assert result["outcome"] == "stopped" and result["command"]["status"] == "Success"
    assert clock.slept <= TIMEOUT_SECONDS - REPORT_RESERVE_SECONDS
    assert stack.state() == "stopped"


def test_agent_not_ready_at_stop_is_retried(stack: Stack) -> None:
    sends = answer_first(stack.ssm, "before-call.ssm.SendCommand", 2,
                         lambda: error_response("InvalidInstanceId", "not registered"))
    clock = FakeClock(ist(f"{DAY} 15:40"))
    result = run(stack, clock)
    assert sends == [3] and result["outcome"] == "stopped"
    assert clock.sleeps[:2] == [2.0, 4.0]


def test_unreachable_agent_still_stops(stack: Stack) -> None:
    stack.with_settings(agent_wait_seconds=30)
    answer_first(stack.ssm, "before-call.ssm.SendCommand", 10**6,
                 lambda: error_response("InvalidInstanceId", "not registered"))
    result = run_failing(stack)
    assert "SSM agent" in result["error"]
    assert stack.state() == "stopped" and result["outcome"] == "eod-failed"


def test_stop_that_fails_is_reported_as_not_stopped(stack: Stack) -> None:
    answer_first(stack.ec2, "before-call.ec2.StopInstances", 10**6,
                 lambda: error_response("UnauthorizedOperation", "not allowed to stop"))
    result = run_failing(stack)
    assert result["outcome"] == "failed" and result["state_after"] == "running"
    [note] = stack.notifications()
    assert note["subject"] == f"simpletrader stop {DAY}: FAILED, instance not stopped"
    assert "UnauthorizedOperation" in note["message"] and "stop it by hand" in note["message"]


def test_dry_run_changes_nothing(stack: Stack) -> None:
    stops = stack.count(stack.ec2, "ec2.StopInstances")
    result = run(stack, dry_run=True)
    assert result["outcome"] == "dry-run"
    assert any(EOD_DOCUMENT in w for w in result["would"])
    assert stops() == 0 and stack.state() == "running"
    assert stack.commands() == [] and stack.notifications() == []


def test_a_warning_in_the_routines_last_line_is_a_warning_of_the_stop(stack: Stack) -> None:
    prefix = "SimpleTraderLogs/" + "x" * 300  # a long line: the warning is read before it is cut
    command_status(stack.ssm, "Success", code=0, stdout=(
        "eod: WARNING: closure script src/setup/closure_setup.py is not in the workspace; uploading without it\n"
        f"eod: uploaded 2 files ({prefix}/, SimpleTraderLedger/); WARNING closure script "
        "src/setup/closure_setup.py is missing\n"))
    result = run(stack)
    assert result["outcome"] == "stopped" and result["ok"]
    assert result["warnings"] == ["closure script src/setup/closure_setup.py is missing"]
    [note] = stack.notifications()
    assert note["subject"] == f"simpletrader stop {DAY}: end of day done, instance stopped (with warnings)"
    assert "Warnings:\n- closure script src/setup/closure_setup.py is missing" in note["message"]


def test_a_routine_without_warnings_adds_none(stack: Stack) -> None:
    command_status(stack.ssm, "Success", code=0, stdout="eod: uploaded 2 files (logs/2026-01-28/, ledger/)\n")
    result = run(stack)
    assert result["warnings"] == []
    [note] = stack.notifications()
    assert "Warnings" not in note["message"] and not note["subject"].endswith("(with warnings)")
