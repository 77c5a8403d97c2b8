"""Stop function: run the host's end-of-day routine, then stop the trading host.

Handler: ``stop.handler``. Steps (one JSON log line each):

1. already stopped: nothing to do, reported; stopping: wait for stopped, reported;
2. send the SSM document ``ST_EOD_DOCUMENT`` (the stack's own, holding
   ``simpletrader-workspace eod``: closure script, upload of trade logs and
   ledger) and wait for it within ``ST_COMMAND_TIMEOUT_SECONDS`` and the
   function's own timeout (keeping time to stop the instance);
3. stop the instance and wait until it is stopped, whatever the routine's
   outcome (an idle instance costs money; data it did not upload stays on the
   volume for the next sync to rescue);
4. one notification; a failed or timed-out routine fails the invocation
   after the instance is stopped. Warnings the routine's last line ends with
   (``; WARNING <text>``, e.g. a configured closure script missing from the
   workspace) are the result's ``warnings``: the subject says "with
   warnings" and the message lists them.

No calendar gate: on a day the start function skipped, the instance is
already stopped and this is a reported no-op. ``{"dry_run": true}`` reports
what would happen and changes nothing (no notification either).
"""

from __future__ import annotations

from datetime import date
from typing import Any, NoReturn

from st_calendar import CalendarError, TradingCalendar
from st_instance import WaitConfig, describe_state, wait_running, wait_stopped
from st_runtime import (
    MANUAL,
    Budget,
    Clock,
    Event,
    EventError,
    InvocationFailed,
    LambdaContext,
    StepFailed,
    StepLog,
    SystemClock,
    client,
    describe_error,
    message_lines,
    notify,
    notify_early_failure,
    parse_event,
)
from st_settings import Settings, SettingsError, load_settings
from st_ssm import CommandResult, send_when_agent_ready, wait_command

FN = "stop"
# Time kept after the end-of-day deadline to stop the instance and wait for stopped.
STOP_RESERVE_SECONDS = 120.0


def _session_stops_later(event: Event, settings: Settings, day: date, log: StepLog) -> str | None:
    """Why this weekly firing does nothing: the day is a special session that stops at its own time."""
    weekly = event.weekly_time(settings.zone)
    if weekly is None:
        return None
    try:
        calendar = TradingCalendar.load(settings.calendar_file)
    except CalendarError as err:  # the stop goes ahead: an idle host costs money
        log.warning("calendar", problem=str(err))
        return None
    return calendar.weekly_firing_skipped(day, weekly, "stop")


def run_stop(*, event: Event, settings: Settings, ec2: Any, ssm: Any, sns: Any, clock: Clock,
             budget: Budget, log: StepLog | None = None) -> dict[str, Any]:
    """The stop logic. Returns the result dict; raises InvocationFailed after reporting a failure."""
    log = log or StepLog(FN)
    day = (event.time or clock.now()).astimezone(settings.zone).date()
    result: dict[str, Any] = {
        "function": FN, "outcome": "failed", "ok": False, "dry_run": event.dry_run, "date": day.isoformat(),
        "manual": event.manual,
        "instance_id": settings.instance_id, "state_before": None, "state_after": None, "command": None,
        "actions": [], "warnings": [], "error": None,
    }
    actions: list[str] = result["actions"]
    wait_cfg = WaitConfig(settings.waiter_delay_seconds, settings.waiter_max_attempts)
    later = _session_stops_later(event, settings, day, log)
    if later:
        result.update(outcome="skipped-session-hours", ok=True)
        log("skip", reason="session-hours")
        if not event.dry_run:
            _report(sns, settings, result, day, log, [f"No stop now: {later}."])
        return result
    command: CommandResult | None = None
    try:
        state, _ = describe_state(ec2, settings.instance_id)
        result["state_before"] = state
        log("instance-state", instance_id=settings.instance_id, state=state, date=day.isoformat())

        if event.dry_run:
            result["outcome"] = "dry-run"
            result["ok"] = True
            if state in ("stopped", "terminated", "shutting-down"):
                plan = [f"nothing: instance {settings.instance_id} is {state}"]
            elif state == "stopping":
                plan = ["wait for the instance to stop"]
            else:
                plan = [f"run the SSM document {settings.eod_document} (end of day) and wait up to "
                        f"{settings.command_timeout_seconds}s",
                        f"stop instance {settings.instance_id} (now {state}) and wait until stopped, "
                        "even if the routine fails"]
            result["would"] = plan
            log("dry-run", would=plan)
            return result

        if state in ("stopped", "terminated"):
            result["outcome"] = "already-stopped"
            result["ok"] = True
            result["state_after"] = state
            log("nothing-to-do", state=state)
            _report(sns, settings, result, day, log,
                    [f"Instance {settings.instance_id} was already {state}; nothing to do.",
                     "The end-of-day routine did not run."])
            return result
        if state in ("stopping", "shutting-down"):
            log("wait-stopped", instance_id=settings.instance_id, state=state)
            wait_stopped(ec2, settings.instance_id, wait_cfg, budget)
            result["outcome"] = "already-stopped"
            result["ok"] = True
            result["state_after"] = "stopped"
            actions.append("waited for the instance to stop")
            _report(sns, settings, result, day, log,
                    [f"Instance {settings.instance_id} was already {state} (stopped by someone else); "
                     "it is now stopped.", "The end-of-day routine did not run."])
            return result
        if state == "pending":
            log("wait-running", instance_id=settings.instance_id)
            wait_running(ec2, settings.instance_id, wait_cfg, budget, clock, reserve=STOP_RESERVE_SECONDS)

        if event.eod:
            command = _run_eod(ssm, settings, budget, clock, log, day, result)
        else:
            log("eod-skipped", reason="manual stop without --eod")
            result["warnings"].append("the end-of-day routine did not run (stopped without --eod); today's "
                                      "trade data stays on the volume and the next sync uploads it")
    except Exception as err:  # noqa: BLE001 - stop anyway, report, re-raise
        eod_error: Exception | None = err
    else:
        eod_error = None if not event.eod or (command is not None and command.ok) else StepFailed(
            f"end-of-day routine {command.describe() if command else 'did not run'}")

    if eod_error is not None and result["state_before"] is None:
        # Could not even read the instance state: nothing safe to do but report.
        _fail(sns, settings, result, day, log, eod_error, stopped=False)

    try:
        _stop_instance(ec2, settings, wait_cfg, budget, log)
        actions.append("stopped the instance")
        result["state_after"] = "stopped"
    except Exception as err:  # noqa: BLE001 - reported below, then re-raised
        state_after = _safe_state(ec2, settings.instance_id)
        result["state_after"] = state_after
        reason = describe_error(err)
        if eod_error is not None:
            reason = f"{describe_error(eod_error)}; and stopping failed: {reason}"
        _fail(sns, settings, result, day, log, StepFailed(reason), stopped=False)

    if eod_error is not None:
        _fail(sns, settings, result, day, log, eod_error, stopped=True)

    result["outcome"] = "stopped" if event.eod else "stopped-without-eod"
    result["ok"] = True
    eod_line = (f"End-of-day routine ({settings.eod_document}) {command.describe()}." if command
                else "The end-of-day routine did not run.")
    _report(sns, settings, result, day, log,
            [eod_line, f"Instance {settings.instance_id}: {result['state_before']} -> stopped."])
    return result


def _run_eod(ssm: Any, settings: Settings, budget: Budget, clock: Clock, log: StepLog, day: date,
             result: dict[str, Any]) -> CommandResult:
    agent_deadline = budget.deadline(settings.agent_wait_seconds, reserve=STOP_RESERVE_SECONDS)
    command_id = send_when_agent_ready(
        ssm, settings.instance_id, settings.eod_document, execution_timeout=settings.command_timeout_seconds,
        deadline=agent_deadline, clock=clock, log=log,
        comment=f"{settings.stack_name} stop {day.isoformat()}: end of day")
    result["command"] = {"id": command_id, "status": "Pending"}
    result["actions"].append(f"sent {settings.eod_document}")
    deadline = budget.deadline(settings.command_timeout_seconds, reserve=STOP_RESERVE_SECONDS)
    command = wait_command(ssm, command_id, settings.instance_id, deadline=deadline, clock=clock, log=log)
    result["command"] = command.as_dict()
    result["warnings"].extend(command.warnings)
    log("command-result", command_id=command_id, status=command.status,
        response_code=command.response_code, output=command.output, warnings=list(command.warnings))
    return command


def _stop_instance(ec2: Any, settings: Settings, cfg: WaitConfig, budget: Budget, log: StepLog) -> None:
    resp = ec2.stop_instances(InstanceIds=[settings.instance_id])
    log("stop-instance", instance_id=settings.instance_id,
        state=resp["StoppingInstances"][0]["CurrentState"]["Name"])
    wait_stopped(ec2, settings.instance_id, cfg, budget)
    log("instance-stopped", instance_id=settings.instance_id)


def _safe_state(ec2: Any, instance_id: str) -> str | None:
    try:
        return describe_state(ec2, instance_id)[0]
    except Exception:  # noqa: BLE001 - only for the report
        return None


def _subject(settings: Settings, result: dict[str, Any], day: date) -> str:
    text = {
        "stopped": "end of day done, instance stopped",
        "stopped-without-eod": "instance stopped, end of day not run",
        "skipped-session-hours": "not now (the special session has its own hours)",
        "already-stopped": "instance already stopped",
        "eod-failed": "end of day FAILED, instance stopped",
        "failed": "FAILED, instance not stopped",
    }.get(result["outcome"], result["outcome"])
    warn = " (with warnings)" if result["warnings"] and result["outcome"] == "stopped" else ""
    return f"{settings.stack_name} stop {day.isoformat()}{MANUAL if result['manual'] else ''}: {text}{warn}"


def _report(sns: Any, settings: Settings, result: dict[str, Any], day: date, log: StepLog,
            lines: list[str]) -> None:
    subject = _subject(settings, result, day)
    header = f"SimpleTrader stop function, stack {settings.stack_name}, {day.isoformat()}."
    result["notified"] = notify(sns, settings.topic_arn, subject,
                                message_lines(header, lines, result["warnings"]), log)
    result["subject"] = subject


def _fail(sns: Any, settings: Settings, result: dict[str, Any], day: date, log: StepLog, err: Exception,
          stopped: bool) -> NoReturn:
    reason = describe_error(err)
    result["outcome"] = "eod-failed" if stopped else "failed"
    result["ok"] = False
    result["error"] = reason
    log.error("failed", error=reason, state_before=result["state_before"], state_after=result["state_after"])
    lines = [f"Stop FAILED: {reason}"]
    if stopped:
        lines.append(f"Instance {settings.instance_id} was stopped anyway. Trade logs and ledger "
                     "that were not uploaded stay on its volume for the next sync to rescue. "
                     "The routine's output is in the SSM Run Command history.")
    else:
        lines.append(f"Instance {settings.instance_id} is {result['state_after'] or 'in an unknown state'}; "
                     "stop it by hand if it is still running (it costs money).")
    if result["command"]:
        lines.append(f"SSM command id: {result['command'].get('id')}")
    _report(sns, settings, result, day, log, lines)
    raise InvocationFailed(f"stop failed: {reason}", result) from err


def handler(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    log = StepLog(FN)
    try:
        settings = load_settings()
        parsed = parse_event(event, allow_force=False)
    except (SettingsError, EventError) as err:
        notify_early_failure(lambda region: client("sns", region), FN, err, log,
                             "The instance was not stopped: stop it by hand "
                             "(`python -m provision stop --eod` uploads the day first).")
        raise
    log("invoked", dry_run=parsed.dry_run, time=parsed.time.isoformat() if parsed.time else None)
    clock = SystemClock()
    return run_stop(event=parsed, settings=settings, ec2=client("ec2"), ssm=client("ssm"),
                    sns=client("sns"), clock=clock, budget=Budget.from_context(clock, context), log=log)
