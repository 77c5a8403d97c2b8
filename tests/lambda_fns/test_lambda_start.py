"""The start function against the emulator: calendar gate, instance states, SSM, token, notifications."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import start
from fnhelpers import (
    SYNC_DOCUMENT,
    FakeClock,
    Stack,
    answer_first,
    budget,
    command_status,
    error_response,
    force_instance_state,
    ist,
    put_manifest,
    record_params,
    token_published_at,
)
from st_runtime import Event, InvocationFailed

WEDNESDAY = "2026-01-28"


def scheduled(day: str, hhmm: str = "08:45") -> datetime:
    return ist(f"{day} {hhmm}")


def run(stack: Stack, clock: FakeClock | None = None, *, day: str = WEDNESDAY, dry_run: bool = False,
        force: bool = False, event_time: datetime | None | str = "scheduled",
        remaining: float | None = None) -> dict[str, Any]:
    when = scheduled(day) if event_time == "scheduled" else event_time
    assert not isinstance(when, str)
    clock = clock or FakeClock(scheduled(day) + timedelta(seconds=5))
    return start.run_start(event=Event(time=when, dry_run=dry_run, force=force), settings=stack.settings,
                           ec2=stack.ec2, ssm=stack.ssm, s3=stack.s3, sns=stack.sns, clock=clock,
                           budget=budget(clock, remaining))


def run_failing(stack: Stack, clock: FakeClock | None = None, **kw: Any) -> dict[str, Any]:
    with pytest.raises(InvocationFailed) as info:
        run(stack, clock, **kw)
    return info.value.result


def invalid_instance() -> Any:
    return error_response("InvalidInstanceId", "Instances not in a valid state for account")


# --------------------------------------------------------------------------- instance states


def test_start_from_stopped_starts_syncs_and_reports(stack: Stack) -> None:
    stack.stop_now()
    sent = record_params(stack.ssm, "ssm.SendCommand")
    result = run(stack)
    assert result["outcome"] == "synced" and result["ok"]
    assert result["state_before"] == "stopped" and result["state_after"] == "running"
    assert stack.state() == "running"
    assert result["date"] == WEDNESDAY
    assert result["calendar"] == {"date": WEDNESDAY, "open": True, "reason": "trading-day", "name": None}
    [cmd] = stack.commands()
    assert cmd["DocumentName"] == SYNC_DOCUMENT  # the stack's own document, never AWS-RunShellScript
    assert stack.instance_id in cmd["InstanceIds"]
    assert [(c["InstanceIds"], c["DocumentName"], c["Parameters"]) for c in sent] == [
        ([stack.instance_id], SYNC_DOCUMENT, {"executionTimeout": ["600"]})]
    assert result["command"]["id"] == cmd["CommandId"] and result["command"]["status"] == "Success"
    [note] = stack.notifications()
    assert note["subject"].startswith(f"simpletrader start {WEDNESDAY}: started and synced")
    assert "stopped -> running" in note["message"]


def test_start_when_running_does_not_start_again(stack: Stack) -> None:
    starts = stack.count(stack.ec2, "ec2.StartInstances")
    result = run(stack)
    assert result["outcome"] == "synced"
    assert result["state_before"] == "running"
    assert starts() == 0
    assert [c["DocumentName"] for c in stack.commands()] == [SYNC_DOCUMENT]


def test_start_while_stopping_waits_for_stopped_then_starts(stack: Stack) -> None:
    stack.stop_now()
    shown = force_instance_state(stack.ec2, "stopping", times=3)  # first look + two waiter polls
    starts = stack.count(stack.ec2, "ec2.StartInstances")
    result = run(stack)
    assert shown == [3]
    assert result["state_before"] == "stopping"
    assert "waited for the instance to stop" in result["actions"]
    assert starts() == 1
    assert result["outcome"] == "synced" and stack.state() == "running"


def test_pending_to_stopped_is_a_failure_with_the_reason(stack: Stack) -> None:
    stack.stop_now()

    def after_start(**_: Any) -> None:
        force_instance_state(stack.ec2, "stopped", reason="Client.InternalError: Client error on launch")

    stack.ec2.meta.events.register("after-call.ec2.StartInstances", after_start)
    result = run_failing(stack)
    assert result["outcome"] == "failed" and not result["ok"]
    assert "stopped" in result["error"] and "Client error on launch" in result["error"]
    assert "default EBS key is a customer managed key" in result["error"]  # what it most often means
    assert stack.commands() == []
    [note] = stack.notifications()
    assert note["subject"] == f"simpletrader start {WEDNESDAY}: FAILED"
    assert "Client error on launch" in note["message"]


def test_a_stale_stopped_right_after_start_is_rechecked(stack: Stack) -> None:
    # DescribeInstances is eventually consistent: one "stopped" right after StartInstances is not a failure.
    stack.stop_now()
    shown: list[list[int]] = []

    def after_start(**_: Any) -> None:
        shown.append(force_instance_state(stack.ec2, "stopped", times=1))

    stack.ec2.meta.events.register("after-call.ec2.StartInstances", after_start)
    result = run(stack)
    assert result["outcome"] == "synced" and shown == [[1]]


def test_pending_instance_is_waited_for_not_started_again(stack: Stack) -> None:
    force_instance_state(stack.ec2, "pending", times=2)
    starts = stack.count(stack.ec2, "ec2.StartInstances")
    result = run(stack)
    assert result["state_before"] == "pending" and result["outcome"] == "synced"
    assert starts() == 0


def test_terminated_instance_fails_without_starting(stack: Stack) -> None:
    force_instance_state(stack.ec2, "terminated")
    starts = stack.count(stack.ec2, "ec2.StartInstances")
    result = run_failing(stack)
    assert "terminated" in result["error"] and starts() == 0


# --------------------------------------------------------------------------- SSM agent and command


def test_agent_not_ready_is_retried_with_backoff_then_syncs(stack: Stack) -> None:
    stack.stop_now()
    sends = answer_first(stack.ssm, "before-call.ssm.SendCommand", 3, invalid_instance)
    clock = FakeClock(scheduled(WEDNESDAY))
    result = run(stack, clock)
    assert sends == [4]
    assert result["outcome"] == "synced"
    assert clock.sleeps[:3] == [2.0, 4.0, 8.0]
    assert len(stack.commands()) == 1  # the three refused sends left nothing behind


def test_agent_never_ready_fails_at_the_agent_deadline(stack: Stack) -> None:
    stack.with_settings(agent_wait_seconds=60)
    answer_first(stack.ssm, "before-call.ssm.SendCommand", 10**6, invalid_instance)
    clock = FakeClock(scheduled(WEDNESDAY))
    result = run_failing(stack, clock)
    assert "SSM agent" in result["error"]
    assert 59 <= clock.slept <= 60
    [note] = stack.notifications()
    assert "FAILED" in note["subject"] and "SSM agent" in note["message"]


def test_other_send_errors_are_not_retried(stack: Stack) -> None:
    sends = answer_first(stack.ssm, "before-call.ssm.SendCommand", 10**6,
                         lambda: error_response("AccessDeniedException", "not allowed"))
    result = run_failing(stack)
    assert sends == [1]
    assert "AccessDeniedException" in result["error"]


def test_failed_sync_fails_start_and_reports_the_routine_output(stack: Stack) -> None:
    command_status(stack.ssm, "Failed", code=1,
                   stdout="downloading...\nsync: FAILED sha256 mismatch for code")
    result = run_failing(stack)
    assert result["outcome"] == "failed"
    assert result["command"]["status"] == "Failed" and result["command"]["response_code"] == 1
    assert "sync: FAILED sha256 mismatch" in result["error"]
    [note] = stack.notifications()
    assert note["subject"].endswith("FAILED")
    assert "sync: FAILED sha256 mismatch for code" in note["message"]
    assert "exit 1" in note["message"]


def test_sync_in_progress_past_the_command_timeout_fails_cleanly(stack: Stack) -> None:
    stack.with_settings(command_timeout_seconds=90)
    polls = command_status(stack.ssm, "InProgress")
    clock = FakeClock(scheduled(WEDNESDAY))
    result = run_failing(stack, clock)
    assert result["command"]["status"] == "DeadlineExceeded"
    assert "deadline" in result["error"]
    assert 89 <= clock.slept <= 90 and polls[0] >= 2
    assert "FAILED" in stack.notifications()[0]["subject"]


def test_the_function_timeout_bounds_the_sync_wait(stack: Stack) -> None:
    command_status(stack.ssm, "InProgress")
    clock = FakeClock(scheduled(WEDNESDAY))
    result = run_failing(stack, clock, remaining=100.0)  # default command timeout is 600s
    assert result["command"]["status"] == "DeadlineExceeded"
    assert clock.slept <= 100.0 - 20.0  # leaves the reporting reserve
    assert len(stack.notifications()) == 1


def test_pending_then_success_is_polled_to_completion(stack: Stack) -> None:
    pending = answer_first(stack.ssm, "before-call.ssm.GetCommandInvocation", 2,
                           lambda: error_response("InvocationDoesNotExist", "not yet"))
    clock = FakeClock(scheduled(WEDNESDAY))
    result = run(stack, clock)
    assert pending == [3] and result["outcome"] == "synced"
    assert clock.sleeps == [5.0, 5.0]


# --------------------------------------------------------------------------- calendar gate


@pytest.mark.parametrize(("day", "outcome", "subject_part"), [
    ("2026-01-26", "skipped-holiday", "skipped (holiday: Republic Day)"),
    ("2026-11-10", "skipped-holiday", "skipped (holiday: "),
    ("2026-01-31", "skipped-weekend", "skipped (not a trading weekday)"),
])
def test_closed_days_are_skipped_and_reported(stack: Stack, day: str, outcome: str,
                                              subject_part: str) -> None:
    stack.stop_now()
    result = run(stack, day=day)
    assert result["outcome"] == outcome and result["ok"]
    assert stack.state() == "stopped" and stack.commands() == []
    [note] = stack.notifications()
    assert note["subject"].startswith(f"simpletrader start {day}: {subject_part}")


def test_late_event_judges_the_scheduled_ist_date(stack: Stack) -> None:
    # 22:00 UTC on the 25th is 03:30 IST on Republic Day; the function runs hours later.
    stack.stop_now()
    clock = FakeClock(datetime(2026, 1, 26, 12, 0, tzinfo=timezone.utc))
    result = run(stack, clock, event_time=datetime(2026, 1, 25, 22, 0, tzinfo=timezone.utc))
    assert result["outcome"] == "skipped-holiday" and result["date"] == "2026-01-26"


def test_retry_a_day_late_still_judges_the_scheduled_day(stack: Stack) -> None:
    clock = FakeClock(scheduled("2026-01-31"))  # runs on a Saturday...
    result = run(stack, clock, day="2026-01-30")  # ...for Friday's schedule
    assert result["outcome"] == "synced" and result["date"] == "2026-01-30"


def test_manual_invocation_without_time_uses_now(stack: Stack) -> None:
    clock = FakeClock(scheduled("2026-01-26", "10:00"))
    result = run(stack, clock, event_time=None)
    assert result["outcome"] == "skipped-holiday" and result["date"] == "2026-01-26"


def test_special_session_saturday_starts(stack: Stack) -> None:
    stack.stop_now()
    result = run(stack, day="2026-11-07")
    assert result["outcome"] == "synced"
    assert result["calendar"]["reason"] == "special-session"
    assert stack.state() == "running"


def test_uncovered_year_starts_with_a_warning(stack: Stack) -> None:
    token_published_at(stack, scheduled("2027-01-27", "07:00"))
    result = run(stack, day="2027-01-27")
    assert result["outcome"] == "synced"
    assert result["calendar"]["reason"] == "uncovered-year"
    assert any("does not cover 2027" in w for w in result["warnings"])
    [note] = stack.notifications()
    assert note["subject"].endswith("(with warnings)")
    assert "does not cover 2027" in note["message"]


def test_force_ignores_the_calendar(stack: Stack) -> None:
    stack.stop_now()
    result = run(stack, day="2026-01-26", force=True)
    assert result["outcome"] == "synced" and result["force"]
    assert result["calendar"]["open"] is False
    assert stack.state() == "running"


def test_missing_calendar_fails_and_is_reported(stack: Stack, tmp_path: Any) -> None:
    stack.with_settings(calendar_file=tmp_path / "absent.json")
    result = run_failing(stack)
    assert "cannot read calendar" in result["error"]
    assert stack.notifications()[0]["subject"] == f"simpletrader start {WEDNESDAY}: FAILED"


# --------------------------------------------------------------------------- dry run


def test_dry_run_changes_nothing_and_says_what_would_happen(stack: Stack) -> None:
    stack.stop_now()
    starts = stack.count(stack.ec2, "ec2.StartInstances")
    result = run(stack, dry_run=True)
    assert result["outcome"] == "dry-run"
    assert any("start instance" in w for w in result["would"])
    assert any(SYNC_DOCUMENT in w for w in result["would"])
    assert starts() == 0 and stack.state() == "stopped"
    assert stack.commands() == [] and stack.notifications() == []


def test_dry_run_on_a_holiday_reports_the_skip(stack: Stack) -> None:
    result = run(stack, day="2026-01-26", dry_run=True)
    assert result["outcome"] == "skipped-holiday" and result["dry_run"]
    assert result["would"] == ["skip: 2026-01-26 (Mon) is an exchange holiday (Republic Day)"]
    assert stack.notifications() == []


# --------------------------------------------------------------------------- token freshness


def test_stale_token_is_warned_about(stack: Stack) -> None:
    token_published_at(stack, scheduled("2026-01-27", "20:00"))  # yesterday evening
    result = run(stack)
    assert result["outcome"] == "synced"
    [warning] = result["warnings"]
    assert "access token" in warning and "06:00" in warning
    [note] = stack.notifications()
    assert note["subject"].endswith("(with warnings)")
    assert "2026-01-27 20:00" in note["message"]


def test_token_updated_after_six_is_fresh(stack: Stack) -> None:
    token_published_at(stack, scheduled(WEDNESDAY, "06:30"))
    result = run(stack)
    assert result["warnings"] == []
    assert "warnings" not in stack.notifications()[0]["subject"]


def test_token_published_before_today_is_stale(stack: Stack) -> None:
    # The manifest was just written (now); the function runs two days later.
    clock = FakeClock(datetime.now(timezone.utc) + timedelta(days=2))
    result = run(stack, clock, event_time=None, force=True)
    assert any("access token" in w and "was last published" in w for w in result["warnings"])


def test_manifest_without_published_at_is_judged_by_its_own_time(stack: Stack) -> None:
    # A manifest of an older publish: every token upload rewrote it, so its LastModified stands in.
    put_manifest(stack.s3, stack.bucket, None)
    stack.with_settings(token_fresh_after=(0, 0))  # fresh when written today, whatever the hour now
    now = datetime.now(timezone.utc)
    fresh = run(stack, FakeClock(now), event_time=None, force=True)
    assert not [w for w in fresh["warnings"] if "access token" in w]
    later = run(stack, FakeClock(now + timedelta(days=2)), event_time=None, force=True)
    assert any("was last published" in w for w in later["warnings"])


def test_missing_or_broken_manifest_is_warned_about(stack: Stack) -> None:
    stack.s3.delete_object(Bucket=stack.bucket, Key="deploy/manifest.json")
    result = run(stack)
    assert result["outcome"] == "synced"
    [warning] = [w for w in result["warnings"] if "publication time" in w]
    assert "could not be read from s3://" in warning and "(NoSuchKey)" in warning
    stack.s3.put_object(Bucket=stack.bucket, Key="deploy/manifest.json", Body=b"{not json")
    broken = run(stack)
    assert any("could not be read" in w and "publish" in w for w in broken["warnings"])
    stack.s3.put_object(Bucket=stack.bucket, Key="deploy/manifest.json", Body=b'{"objects": 5}')
    odd = run(stack)
    assert any("(the manifest has no object list)" in w for w in odd["warnings"])


def test_token_check_reads_the_manifest_and_never_the_token(stack: Stack) -> None:
    keys = record_params(stack.s3, "s3.GetObject")
    heads = stack.count(stack.s3, "s3.HeadObject")
    run(stack)
    assert [k["Key"] for k in keys] == ["deploy/manifest.json"] and heads() == 0
