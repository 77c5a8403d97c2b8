"""Shared parts of the start and stop functions.

Everything here takes its boto3 clients, settings and clock as arguments, so
tests drive it against the local emulator with a fake clock (no real sleeps).

- ``Clock`` / ``SystemClock``: wall time, monotonic time and sleep in one place.
- ``Budget``: deadlines that stay inside the function's own timeout.
- ``StepLog``: one structured JSON log line per step; never given a secret.
- ``parse_event``: strict validation of the invocation event.
- ``notify``: one SNS message per outcome (``notify_early_failure`` when the
  function could not even begin).

The host's state and its waits are in ``st_instance.py``, the SSM documents'
runs in ``st_ssm.py``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from st_settings import stack_of

LOGGER = logging.getLogger("simpletrader")
LOGGER.setLevel(logging.INFO)

# Deadline handling: stop polling this long before the function's own timeout,
# so there is time left to report (and, for stop, to stop the instance).
REPORT_RESERVE_SECONDS = 20.0


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


def client(service: str, region: str | None = None) -> Any:
    """The handlers' boto3 client: standard retries, five attempts; in ``region`` when given (the topic's)."""
    return boto3.client(service, region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 5}))
