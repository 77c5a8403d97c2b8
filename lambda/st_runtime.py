"""Shared parts of the start and stop functions.

Everything here takes its boto3 clients, settings and clock as arguments, so
tests drive it against the local emulator with a fake clock (no real sleeps).

- ``Clock`` / ``SystemClock``: wall time, monotonic time and sleep in one place.
- ``Budget``: deadlines that stay inside the function's own timeout.
- ``StepLog``: one structured JSON log line per step; never given a secret.
- ``parse_event``: strict validation of the invocation event.
- instance state: ``describe_state``, ``wait_running``, ``wait_stopped`` (botocore waiters).
- SSM: ``send_when_agent_ready`` (sends one of the stack's documents; retries
  InvalidInstanceId with backoff, bounded)
  and ``wait_command`` (polls to a terminal status or the deadline).
- ``notify``: one SNS message per outcome.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, WaiterError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.waiter import WaiterModel, create_waiter_with_client
from st_settings import stack_of

LOGGER = logging.getLogger("simpletrader")
LOGGER.setLevel(logging.INFO)

# Invocation statuses that may still change; anything else (Success, Failed, Cancelled,
# TimedOut, and any status a newer API adds) is final.
RUNNING_COMMAND_STATUSES = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
# Deadline handling: stop polling this long before the function's own timeout,
# so there is time left to report (and, for stop, to stop the instance).
REPORT_RESERVE_SECONDS = 20.0
SSM_MIN_DELIVERY_TIMEOUT = 30
OUTPUT_TAIL_CHARS = 300


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class InvocationFailed(RuntimeError):
    """The function did not achieve its outcome; ``result`` says what happened (already reported)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


class EventError(ValueError):
    """The invocation event is not one this function accepts."""


class StepFailed(RuntimeError):
    """A step failed for a reason that is fully described by the message."""


# --------------------------------------------------------------------------- budget


@dataclass
class Budget:
    """The time this invocation may still use, in the clock's monotonic seconds."""

    clock: Clock
    end: float | None  # None: no function timeout known (tests, manual runs)

    @classmethod
    def from_context(cls, clock: Clock, context: LambdaContext | None) -> Budget:
        if context is None or not hasattr(context, "get_remaining_time_in_millis"):
            return cls(clock, None)
        remaining = context.get_remaining_time_in_millis() / 1000.0
        return cls(clock, clock.monotonic() + remaining - REPORT_RESERVE_SECONDS)

    def deadline(self, seconds: float, reserve: float = 0.0) -> float:
        """min(now + seconds, the function's end - reserve)."""
        wanted = self.clock.monotonic() + seconds
        if self.end is None:
            return wanted
        return min(wanted, self.end - reserve)

    def remaining(self, reserve: float = 0.0) -> float | None:
        if self.end is None:
            return None
        return self.end - reserve - self.clock.monotonic()


# --------------------------------------------------------------------------- logging


@dataclass
class StepLog:
    """One JSON line per step: {"fn": ..., "step": ..., ...}. Callers pass no secret."""

    fn: str
    logger: logging.Logger = field(default=LOGGER)
    lines: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, level: int, step: str, fields: dict[str, Any]) -> None:
        record = {"fn": self.fn, "step": step, "level": logging.getLevelName(level), **fields}
        self.lines.append(record)
        self.logger.log(level, json.dumps(record, default=str, sort_keys=False))

    def __call__(self, step: str, /, **fields: Any) -> None:
        self.emit(logging.INFO, step, fields)

    def warning(self, step: str, /, **fields: Any) -> None:
        self.emit(logging.WARNING, step, fields)

    def error(self, step: str, /, **fields: Any) -> None:
        self.emit(logging.ERROR, step, fields)


# --------------------------------------------------------------------------- event

EVENTBRIDGE_KEYS = frozenset({"version", "id", "detail-type", "source", "account", "time", "region",
                              "resources", "detail"})


@dataclass(frozen=True)
class Event:
    time: datetime | None  # the scheduled time (EventBridge), None for manual invocations
    dry_run: bool = False
    force: bool = False
    # Set only by an operator's `python -m provision start|stop`, which runs these functions
    # in process (never from an invocation event): the notification says "manual"; start may
    # leave out the sync, stop the end-of-day routine.
    manual: bool = False
    sync: bool = True
    eod: bool = True
    # Set by a special session's one-time schedule (its date): the firing at the session's own hours.
    session: str | None = None

    def weekly_time(self, zone: Any) -> str | None:
        """The exchange-local HH:MM of a weekly rule's firing (None for any other invocation)."""
        if self.time is None or self.session is not None:
            return None
        return self.time.astimezone(zone).strftime("%H:%M")


#: What a notification subject adds for a manual run.
MANUAL = " (manual)"


def parse_event(event: Any, allow_force: bool) -> Event:
    """Validate an EventBridge scheduled event or a manual one ({"dry_run": true}, {"force": true})."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {type(event).__name__}")
    allowed = EVENTBRIDGE_KEYS | {"dry_run", "session"} | ({"force"} if allow_force else set())
    unknown = sorted(str(k) for k in event if k not in allowed)
    if unknown:
        raise EventError(f"unknown event key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")
    flags: dict[str, bool] = {}
    for key in ("dry_run", "force"):
        if key in event:
            if not isinstance(event[key], bool):
                raise EventError(f"event key {key!r} must be true or false, got {event[key]!r}")
            flags[key] = event[key]
    moment: datetime | None = None
    if "time" in event:
        raw = event["time"]
        if not isinstance(raw, str):
            raise EventError(f"event key 'time' must be an ISO 8601 string, got {raw!r}")
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise EventError(f"event key 'time' is not an ISO 8601 time: {raw!r}") from None
        if moment.tzinfo is None:
            raise EventError(f"event key 'time' has no UTC offset: {raw!r}")
    session = event.get("session")
    if session is not None and (not isinstance(session, str) or len(session) != 10):
        raise EventError(f"event key 'session' must be the session's date YYYY-MM-DD, got {session!r}")
    return Event(time=moment, session=session, **flags)


# --------------------------------------------------------------------------- instance state

# InstanceRunning from botocore's EC2 waiters, plus: "stopped" is a failure, so an
# instance that goes pending -> stopped (e.g. a KMS grant problem) fails fast.
_RUNNING_MODEL = WaiterModel({
    "version": 2,
    "waiters": {
        "InstanceRunningOrFailed": {
            "operation": "DescribeInstances",
            "delay": 5,
            "maxAttempts": 60,
            "acceptors": [
                {"expected": "running", "matcher": "pathAll", "state": "success",
                 "argument": "Reservations[].Instances[].State.Name"},
                {"expected": "stopped", "matcher": "pathAny", "state": "failure",
                 "argument": "Reservations[].Instances[].State.Name"},
                {"expected": "stopping", "matcher": "pathAny", "state": "failure",
                 "argument": "Reservations[].Instances[].State.Name"},
                {"expected": "shutting-down", "matcher": "pathAny", "state": "failure",
                 "argument": "Reservations[].Instances[].State.Name"},
                {"expected": "terminated", "matcher": "pathAny", "state": "failure",
                 "argument": "Reservations[].Instances[].State.Name"},
                {"expected": "InvalidInstanceID.NotFound", "matcher": "error", "state": "retry"},
            ],
        },
    },
})


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instances = [i for r in reservations for i in r.get("Instances", [])]
    if not instances:
        raise StepFailed(f"instance {instance_id} not found")
    return dict(instances[0])


def describe_state(ec2: Any, instance_id: str) -> tuple[str, str | None]:
    """(state name, state reason message or None)."""
    inst = _instance(ec2, instance_id)
    reason = inst.get("StateReason", {}).get("Message") or inst.get("StateTransitionReason") or None
    return str(inst["State"]["Name"]), reason


@dataclass(frozen=True)
class WaitConfig:
    delay: float
    max_attempts: int

    def bounded(self, budget: Budget, reserve: float = 0.0) -> dict[str, Any]:
        attempts = self.max_attempts
        remaining = budget.remaining(reserve)
        if remaining is not None and self.delay > 0:
            attempts = max(1, min(attempts, math.floor(max(remaining, 0.0) / self.delay) + 1))
        return {"Delay": self.delay, "MaxAttempts": attempts}


def _last_state(err: WaiterError) -> str | None:
    resp = err.last_response or {}
    try:
        return str(resp["Reservations"][0]["Instances"][0]["State"]["Name"])
    except (KeyError, IndexError, TypeError):
        return None


def wait_running(ec2: Any, instance_id: str, cfg: WaitConfig, budget: Budget, clock: Clock,
                 reserve: float = 0.0) -> None:
    """Wait for running; raise StepFailed if it ends up stopped/terminated or the wait runs out.

    DescribeInstances is eventually consistent: a "stopped" seen right after
    StartInstances is re-checked once before it counts as a failure.
    """
    waiter = create_waiter_with_client("InstanceRunningOrFailed", _RUNNING_MODEL, ec2)
    for attempt in (1, 2):
        try:
            waiter.wait(InstanceIds=[instance_id], WaiterConfig=cfg.bounded(budget, reserve))
            return
        except WaiterError as err:
            state = _last_state(err)
            if attempt == 1 and state == "stopped":
                clock.sleep(cfg.delay)
                now_state, _ = describe_state(ec2, instance_id)
                if now_state in ("pending", "running"):
                    continue
            _, reason = describe_state(ec2, instance_id)
            detail = f" ({reason})" if reason else ""
            if state is None:
                raise StepFailed(f"instance {instance_id} did not reach running: {err}") from None
            raise StepFailed(f"instance {instance_id} did not reach running; it is {state}{detail}") from None


def wait_stopped(ec2: Any, instance_id: str, cfg: WaitConfig, budget: Budget, reserve: float = 0.0) -> None:
    try:
        waiter = ec2.get_waiter("instance_stopped")
        waiter.wait(InstanceIds=[instance_id], WaiterConfig=cfg.bounded(budget, reserve))
    except WaiterError as err:
        state = _last_state(err) or "unknown"
        raise StepFailed(f"instance {instance_id} did not reach stopped; it is {state}") from None


# --------------------------------------------------------------------------- SSM


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def send_when_agent_ready(ssm: Any, instance_id: str, document: str, *, execution_timeout: int,
                          deadline: float, clock: Clock, log: StepLog, comment: str,
                          first_delay: float = 2.0, max_delay: float = 15.0) -> str:
    """Send the SSM document ``document`` (the stack's own: its command is fixed in it, only its
    ``executionTimeout`` is set here); retry InvalidInstanceId (agent not registered yet).

    Returns the command id. Raises StepFailed when the agent is not ready by ``deadline``.
    """
    delay = first_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            resp = ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName=document,
                Parameters={"executionTimeout": [str(execution_timeout)]},
                TimeoutSeconds=max(SSM_MIN_DELIVERY_TIMEOUT, min(execution_timeout, 2592000)),
                Comment=comment[:100],
            )
        except ClientError as err:
            if error_code(err) != "InvalidInstanceId":
                raise
            left = deadline - clock.monotonic()
            if left <= 0:
                raise StepFailed(
                    f"SSM agent on {instance_id} did not accept commands within the wait "
                    f"({attempt} attempts); check the instance role and that the agent runs") from None
            wait = min(delay, left)
            log("agent-wait", attempt=attempt, retry_in=round(wait, 1))
            clock.sleep(wait)
            delay = min(delay * 2, max_delay)
            continue
        command_id = str(resp["Command"]["CommandId"])
        log("command-sent", command_id=command_id, instance_id=instance_id, document=document, attempts=attempt)
        return command_id


@dataclass(frozen=True)
class CommandResult:
    command_id: str
    status: str  # an SSM status, or "DeadlineExceeded"
    response_code: int | None = None
    output: str = ""  # last line of stdout
    error_output: str = ""  # last line of stderr
    # What the last line of stdout ends with, after "; WARNING " (docs/CONTRACTS.md, "Host routines"),
    # read before the line is cut to OUTPUT_TAIL_CHARS.
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "Success"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.command_id, "status": self.status, "response_code": self.response_code,
                "output": self.output, "error_output": self.error_output}

    def describe(self) -> str:
        if self.status == "DeadlineExceeded":
            text = "did not finish before the deadline"
        elif self.ok:
            text = "succeeded"
        else:
            text = f"ended {self.status}"
            if self.response_code is not None and self.response_code >= 0:
                text += f" (exit {self.response_code})"
        tail = self.output or self.error_output
        return f"{text}: {tail}" if tail else text


def _last_line(text: Any, limit: int | None = OUTPUT_TAIL_CHARS) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


#: How a host routine's last line appends a warning: ``eod: uploaded 3 files (...); WARNING <text>``.
WARNING_MARK = "; WARNING "


def line_warnings(line: str) -> tuple[str, ...]:
    """The warnings a routine's last line ends with, in order."""
    return tuple(part.strip() for part in line.split(WARNING_MARK)[1:] if part.strip())


#: Error codes AWS gives for throttling (botocore's own list); with any 5xx, worth asking again.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
    "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
})


def transient(err: Exception) -> bool:
    """Whether asking again later may succeed: throttling, a 5xx, or no answer at all (a connection error or
    a read timeout that outlasted botocore's own retries). Not a malformed request or missing credentials."""
    if isinstance(err, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or error_code(err) in THROTTLING_CODES
    return False


def wait_command(ssm: Any, command_id: str, instance_id: str, *, deadline: float, clock: Clock,
                 log: StepLog, poll_seconds: float = 5.0) -> CommandResult:
    """Poll the command's invocation until a terminal status or ``deadline`` (then try to cancel it).

    A poll that fails transiently is logged and polled again: the command is still running on the host,
    and giving up on it (the stop function would then stop the instance mid-upload) loses more than
    waiting. Any other error is raised.
    """
    status = "Pending"
    while True:
        try:
            inv = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except (ClientError, BotoCoreError) as err:
            if isinstance(err, ClientError) and error_code(err) == "InvocationDoesNotExist":
                inv = None  # not visible yet right after send
            elif transient(err):
                log.warning("command-poll-failed", command_id=command_id, error=describe_error(err)[:200])
                inv = None
            else:
                raise
        if inv is not None:
            status = str(inv.get("Status", "Pending"))
            if status not in RUNNING_COMMAND_STATUSES:
                code = inv.get("ResponseCode")
                last = _last_line(inv.get("StandardOutputContent"), None)
                return CommandResult(command_id, status, int(code) if code is not None else None,
                                     last[:OUTPUT_TAIL_CHARS], _last_line(inv.get("StandardErrorContent")),
                                     line_warnings(last))
        left = deadline - clock.monotonic()
        if left <= 0:
            log.warning("command-deadline", command_id=command_id, last_status=status)
            try:
                ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])
            except (ClientError, BotoCoreError) as err:
                log.warning("command-cancel-failed", command_id=command_id, error=str(err)[:200])
            return CommandResult(command_id, "DeadlineExceeded")
        clock.sleep(min(poll_seconds, left))


# --------------------------------------------------------------------------- notifications


def notify(sns: Any, topic_arn: str, subject: str, message: str, log: StepLog) -> bool:
    """Publish one notification; a failure to publish is logged, not raised (the outcome stands)."""
    subject = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in subject)[:100]
    try:
        resp = sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)
    except (ClientError, BotoCoreError) as err:
        log.error("notify-failed", subject=subject, error=str(err)[:300])
        return False
    log("notified", subject=subject, message_id=resp.get("MessageId"))
    return True


def notify_early_failure(sns_in: Callable[[str], Any], function: str, err: Exception, log: StepLog,
                         consequence: str) -> bool:
    """A function that could not even begin (its settings or its event are wrong) still tells the operator,
    when ``ST_TOPIC_ARN`` names a topic (``sns_in(region)`` makes the client, in the topic's region); the
    error names the variable or field and never holds a secret (the functions' environment has none)."""
    topic = os.environ.get("ST_TOPIC_ARN", "").strip()
    log.error("could-not-begin", error=str(err)[:300])
    parts = topic.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not parts[3]:
        return False
    stack = stack_of(os.environ, topic)
    return notify(sns_in(parts[3]), topic, f"{stack} {function}: FAILED before it began",
                  message_lines(f"The {function} function could not begin: {err}",
                                [consequence, "Fix the cause (`python -m provision up` deploys the functions' "
                                 "settings again), then invoke the function again."], []), log)


def message_lines(header: str, lines: list[str], warnings: list[str]) -> str:
    out = [header, ""] + lines
    if warnings:
        out += ["", "Warnings:"] + [f"- {w}" for w in warnings]
    return "\n".join(out) + "\n"


def describe_error(err: BaseException) -> str:
    if isinstance(err, ClientError):
        info = err.response.get("Error", {})
        op = getattr(err, "operation_name", "AWS call")
        return f"{op} failed: {info.get('Code', 'Error')}: {info.get('Message', '')}".strip()
    return str(err) or type(err).__name__


ClientFactory = Callable[[str], Any]
