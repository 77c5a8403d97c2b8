"""Start function: on a trading day, start the trading host and sync its workspace.

Handler: ``start.handler``. Steps (one JSON log line each):

1. calendar gate for the exchange-local date of the event's ``time`` (the
   scheduled time, so a late or retried invocation judges the right day);
   ``{"force": true}`` ignores the calendar;
2. token freshness: warn when the access token was not published after
   today's ``ST_TOKEN_FRESH_AFTER`` (its ``published_at`` in the manifest; the
   token is never read, and the function's role cannot read it);
3. start the instance unless it is running (a stopping instance is waited
   for first) and wait until it is running; pending -> stopped is a failure;
4. send the SSM document ``ST_SYNC_DOCUMENT`` (the stack's own, holding
   ``simpletrader-workspace sync``) once the agent accepts commands, and
   poll it to completion within ``ST_COMMAND_TIMEOUT_SECONDS`` and the
   function's own timeout;
5. one notification per outcome; a failed sync fails the invocation.

``{"dry_run": true}`` reports what would happen and changes nothing (no
notification either).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timezone
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError
from st_calendar import Decision, TradingCalendar
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
from st_ssm import CommandResult, error_code, send_when_agent_ready, wait_command

FN = "start"


MANIFEST_LIMIT = 4 * 1024 * 1024


def token_published_at(s3: Any, settings: Settings) -> tuple[datetime, str]:
    """When the access token was last published: ``(time, source)``, from the manifest only.

    ``provision publish`` records ``published_at`` in the manifest's token
    entry (docs/CONTRACTS.md). A manifest written before that field existed
    is judged by its own LastModified: every token upload rewrites it. The
    function's role may read the manifest and no secret, so the token itself
    is never read. Raises ClientError/BotoCoreError, or ValueError with what
    is wrong with the manifest.
    """
    response = s3.get_object(Bucket=settings.bucket, Key=settings.manifest_key)
    body = response["Body"].read(MANIFEST_LIMIT + 1)
    if len(body) > MANIFEST_LIMIT:
        raise ValueError("the manifest is larger than 4 MiB")
    manifest = json.loads(body)  # ValueError when it is not JSON
    objects = manifest.get("objects") if isinstance(manifest, dict) else None
    if not isinstance(objects, list):
        raise ValueError("the manifest has no object list")
    tokens = [o for o in objects if isinstance(o, dict) and o.get("role") == "token"]
    if len(tokens) != 1:
        raise ValueError(f"the manifest lists {len(tokens)} token objects")
    stamp = tokens[0].get("published_at")
    if stamp is None:
        return response["LastModified"], "manifest LastModified"
    try:
        return datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc), "published_at"
    except ValueError:
        raise ValueError(f"the manifest's token published_at {stamp!r} is not a UTC time") from None


def check_token(s3: Any, settings: Settings, now: datetime, log: StepLog) -> str | None:
    """A warning when the token was published before today's fresh-after time, else None.

    Reads the manifest only (``token_published_at``): the token is never read or logged.
    """
    zone = settings.zone
    local_now = now.astimezone(zone)
    hh, mm = settings.token_fresh_after
    fresh_after = datetime.combine(local_now.date(), time(hh, mm), tzinfo=zone)
    where = f"s3://{settings.bucket}/{settings.manifest_key}"
    try:
        modified, source = token_published_at(s3, settings)
    except (ClientError, BotoCoreError, ValueError) as err:
        if isinstance(err, ValueError):
            code = str(err)
        else:
            code = (error_code(err) if isinstance(err, ClientError) else type(err).__name__) or "error"
        log.warning("token-check", manifest=settings.manifest_key, problem=code)
        return (f"the access token's publication time could not be read from {where} ({code}); "
                "publish the release and a fresh token with 'python -m provision publish'")
    fresh = modified >= fresh_after
    modified_local = modified.astimezone(zone)
    fields = {"key": settings.token_key, "published_at": modified_local.isoformat(timespec="minutes"),
              "source": source, "fresh_after": fresh_after.isoformat(timespec="minutes"), "fresh": fresh}
    if fresh:
        log("token-check", **fields)
        return None
    log.warning("token-check", **fields)
    return (f"access token s3://{settings.bucket}/{settings.token_key} was last published "
            f"{modified_local:%Y-%m-%d %H:%M} ({settings.timezone}), before today's "
            f"{settings.token_fresh_after_text}; Zerodha tokens expire then. Upload a fresh one and sync "
            "the host with 'python -m provision publish --token FILE --sync' (or invoke this function "
            "with {\"force\": true}) before the trading job runs.")


def _decide(calendar: TradingCalendar, settings: Settings, day: date, event: Event, log: StepLog,
            warnings: list[str]) -> Decision:
    if calendar.timezone != settings.timezone:
        warnings.append(f"calendar.json is for {calendar.timezone} but ST_TIMEZONE is {settings.timezone}; "
                        "the date was judged in ST_TIMEZONE")
    decision = calendar.decide(day)
    if decision.warning:
        warnings.append(decision.warning)
    running_out = calendar.coverage_warning(day)
    if running_out:
        warnings.append(running_out)
    log("calendar", date=day.isoformat(), open=decision.open, reason=decision.reason, name=decision.name,
        source="event" if event.time else "now", force=event.force)
    return decision


def run_start(*, event: Event, settings: Settings, ec2: Any, ssm: Any, s3: Any, sns: Any,
              clock: Clock, budget: Budget, calendar: TradingCalendar | None = None,
              log: StepLog | None = None) -> dict[str, Any]:
    """The start logic. Returns the result dict; raises InvocationFailed after reporting a failure."""
    log = log or StepLog(FN)
    warnings: list[str] = []
    # The day the run is for: the scheduled time's exchange-local date (late runs judge that day).
    day = (event.time or clock.now()).astimezone(settings.zone).date()
    result: dict[str, Any] = {
        "function": FN, "outcome": "failed", "ok": False, "dry_run": event.dry_run, "force": event.force,
        "manual": event.manual,
        "date": day.isoformat(), "instance_id": settings.instance_id, "calendar": None, "state_before": None,
        "state_after": None, "command": None, "actions": [], "warnings": warnings, "error": None,
    }
    actions: list[str] = result["actions"]
    decision: Decision | None = None
    try:
        if calendar is None:
            calendar = TradingCalendar.load(settings.calendar_file)
        decision = _decide(calendar, settings, day, event, log, warnings)
        result["calendar"] = decision.as_dict()

        if not decision.open and not event.force:
            result["outcome"] = f"skipped-{decision.reason}"
            result["ok"] = True
            if event.dry_run:
                return _dry_run(result, log, [f"skip: {decision.describe()}"])
            log("skip", reason=decision.reason, name=decision.name)
            _report(sns, settings, result, decision, log,
                    [f"No start: {decision.describe()}; instance {settings.instance_id} left as it is.",
                     'To start anyway, invoke the function with {"force": true}.'])
            return result
        weekly = event.weekly_time(settings.zone)
        later = calendar.weekly_firing_skipped(day, weekly, "start") if weekly and not event.force else None
        if later:
            result["outcome"] = "skipped-session-hours"
            result["ok"] = True
            if event.dry_run:
                return _dry_run(result, log, [f"skip: {later}"])
            log("skip", reason="session-hours", session_start=calendar.own_hours(day, "start"))
            _report(sns, settings, result, decision, log, [f"No start now: {later}."])
            return result

        checking = settings.token_check != "off"  # noqa: S105 - a mode, not a secret
        token_warning = check_token(s3, settings, clock.now(), log) if checking else None
        if token_warning:
            warnings.append(token_warning)

        state, _ = describe_state(ec2, settings.instance_id)
        result["state_before"] = state
        log("instance-state", instance_id=settings.instance_id, state=state)

        if event.dry_run:
            plan = []
            if state == "stopping":
                plan.append("wait for the instance to stop")
            if state != "running":
                plan.append(f"start instance {settings.instance_id} (now {state}) and wait until running")
            plan.append(f"run the SSM document {settings.sync_document} (workspace sync) and wait "
                        f"up to {settings.command_timeout_seconds}s")
            result["outcome"] = "dry-run"
            result["ok"] = True
            return _dry_run(result, log, plan)

        wait_cfg = WaitConfig(settings.waiter_delay_seconds, settings.waiter_max_attempts)
        if state in ("shutting-down", "terminated"):
            raise StepFailed(f"instance {settings.instance_id} is {state}; it cannot be started")
        if state == "stopping":
            log("wait-stopped", instance_id=settings.instance_id)
            wait_stopped(ec2, settings.instance_id, wait_cfg, budget)
            actions.append("waited for the instance to stop")
            state = "stopped"
        if state == "stopped":
            resp = ec2.start_instances(InstanceIds=[settings.instance_id])
            now_state = resp["StartingInstances"][0]["CurrentState"]["Name"]
            log("start-instance", instance_id=settings.instance_id, state=now_state)
            actions.append("started the instance")
        if state != "running":
            wait_running(ec2, settings.instance_id, wait_cfg, budget, clock)
            log("instance-running", instance_id=settings.instance_id)
        result["state_after"] = "running"
        if not event.sync:
            result["outcome"] = "started"
            result["ok"] = True
            _report(sns, settings, result, decision, log,
                    [f"Instance {settings.instance_id}: {state} -> running.",
                     "The workspace was not synced (the trading jobs refuse to run without today's sync)."])
            return result

        agent_deadline = budget.deadline(settings.agent_wait_seconds)
        command_id = send_when_agent_ready(
            ssm, settings.instance_id, settings.sync_document,
            execution_timeout=settings.command_timeout_seconds, deadline=agent_deadline, clock=clock,
            log=log, comment=f"{settings.stack_name} start {day.isoformat()}: workspace sync")
        result["command"] = {"id": command_id, "status": "Pending"}
        actions.append(f"sent {settings.sync_document}")
        deadline = budget.deadline(settings.command_timeout_seconds)
        command = wait_command(ssm, command_id, settings.instance_id, deadline=deadline, clock=clock, log=log)
        result["command"] = command.as_dict()
        log("command-result", command_id=command_id, status=command.status,
            response_code=command.response_code, output=command.output)
        if not command.ok:
            raise StepFailed(f"workspace sync {command.describe()}")
    except Exception as err:  # noqa: BLE001 - every failure is reported, then re-raised
        _fail(sns, settings, result, decision, log, err)

    result["outcome"] = "synced"
    result["ok"] = True
    _report(sns, settings, result, decision, log, _success_lines(settings, result, command))
    return result


def _success_lines(settings: Settings, result: dict[str, Any], command: CommandResult) -> list[str]:
    before = result["state_before"]
    return [
        f"Instance {settings.instance_id}: {before} -> running.",
        f"Workspace sync ({settings.sync_document}) {command.describe()}.",
    ]


def _dry_run(result: dict[str, Any], log: StepLog, plan: list[str]) -> dict[str, Any]:
    result["would"] = plan
    log("dry-run", would=plan)
    return result


def _subject(settings: Settings, result: dict[str, Any], decision: Decision | None) -> str:
    day = result["date"]
    text = {
        "synced": "started and synced",
        "started": "started, not synced",
        "skipped-weekend": "skipped (not a trading weekday)",
        "skipped-holiday": f"skipped (holiday: {decision.name if decision else ''})",
        "skipped-session-hours": "not now (the special session has its own hours)",
        "failed": "FAILED",
    }.get(result["outcome"], result["outcome"])
    warn = " (with warnings)" if result["warnings"] and result["outcome"] != "failed" else ""
    return f"{settings.stack_name} start {day}{MANUAL if result['manual'] else ''}: {text}{warn}"


def _report(sns: Any, settings: Settings, result: dict[str, Any], decision: Decision | None, log: StepLog,
            lines: list[str]) -> None:
    subject = _subject(settings, result, decision)
    header = f"SimpleTrader start function, stack {settings.stack_name}"
    header += f", {decision.describe()}" if decision is not None else f", {result['date']}"
    result["notified"] = notify(sns, settings.topic_arn, subject, message_lines(header + ".", lines,
                                                                                 result["warnings"]), log)
    result["subject"] = subject


def _fail(sns: Any, settings: Settings, result: dict[str, Any], decision: Decision | None, log: StepLog,
          err: Exception) -> NoReturn:
    reason = describe_error(err)
    result["outcome"] = "failed"
    result["ok"] = False
    result["error"] = reason
    log.error("failed", error=reason, state_before=result["state_before"])
    if result["dry_run"]:
        raise InvocationFailed(f"start (dry run) failed: {reason}", result) from err
    lines = [f"Start FAILED: {reason}"]
    if result["state_before"] is not None:
        lines.append(f"Instance {settings.instance_id} was {result['state_before']}.")
    if result["command"]:
        lines.append(f"SSM command id: {result['command'].get('id')}")
    lines.append("The trading job will refuse to run without a ready workspace; "
                 "rerun the start function (or playbooks/sync.yml) once fixed.")
    _report(sns, settings, result, decision, log, lines)
    raise InvocationFailed(f"start failed: {reason}", result) from err


def handler(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    log = StepLog(FN)
    try:
        settings = load_settings()
        parsed = parse_event(event, allow_force=True)
    except (SettingsError, EventError) as err:
        notify_early_failure(lambda region: client("sns", region), FN, err, log,
                             "The instance was not started and the workspace not synced.")
        raise
    log("invoked", dry_run=parsed.dry_run, force=parsed.force,
        time=parsed.time.isoformat() if parsed.time else None)
    clock = SystemClock()
    return run_start(event=parsed, settings=settings, ec2=client("ec2"), ssm=client("ssm"),
                     s3=client("s3"), sns=client("sns"), clock=clock,
                     budget=Budget.from_context(clock, context), log=log)
