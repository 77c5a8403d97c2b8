"""The Lambda handlers, invoked in-process as Lambda would: their deployed package and environment, the
scheduled event EventBridge sends, a clock moved to the trading morning, and the notifications queue."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3


class ShiftedClock:
    """The Lambda's clock, moved to another wall time (monotonic and sleep are real)."""

    def __init__(self, at: datetime) -> None:
        self.offset = at.astimezone(timezone.utc) - datetime.now(timezone.utc)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Stack:
    """What a day needs to know, read back from the emulator after `provision up`."""

    config: Path
    outputs: dict[str, Any]
    functions: dict[str, dict[str, str]]  # name -> Lambda environment
    code_dir: Path  # the deployed Lambda package, unpacked
    queue_url: str


def scheduled_event(when_local: datetime) -> dict[str, Any]:
    """The event EventBridge sends for a scheduled rule firing at `when_local`."""
    utc = when_local.astimezone(timezone.utc)
    return {"version": "0", "id": "00000000-0000-0000-0000-000000000000", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "ap-south-1", "resources": [], "detail": {}}


@contextlib.contextmanager
def lambda_env(variables: dict[str, str], code_dir: Path) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(variables)
    os.environ["ST_CALENDAR_FILE"] = str(code_dir / "calendar.json")
    os.environ.setdefault("ST_WAITER_DELAY_SECONDS", "1")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_handlers(code_dir: Path) -> tuple[Any, Any]:
    """Import start/stop from the unpacked deployment package (fresh modules)."""
    for mod in [m for m in sys.modules if m in ("start", "stop") or m.startswith("st_")]:
        del sys.modules[mod]
    sys.path.insert(0, str(code_dir))
    try:
        import start  # type: ignore[import-not-found]
        import stop  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(code_dir))
    return start, stop


def invoke(module: Any, event: dict[str, Any], stack: Stack, fn: str, logfile: Path) -> tuple[dict[str, Any], str]:
    """Invoke a handler in-process with its deployed environment; capture its log lines."""
    buf = io.StringIO()
    with lambda_env(stack.functions[fn], stack.code_dir), contextlib.redirect_stdout(buf), \
            contextlib.redirect_stderr(buf):
        import logging

        handler = logging.StreamHandler(buf)
        logging.getLogger().addHandler(handler)
        try:
            result = module.handler(event, None)
            error = ""
        except Exception as exc:  # noqa: BLE001 - the invocation failed, as Lambda would record it
            result = getattr(exc, "result", None) or {"outcome": "failed"}
            error = str(exc)
        finally:
            logging.getLogger().removeHandler(handler)
    with open(logfile, "a") as fh:
        fh.write(f"--- {fn} {json.dumps(event)}\n{buf.getvalue()}\nresult: {json.dumps(result, default=str)}\n"
                 f"error: {error}\n\n")
    return result, error


def notifications(queue_url: str) -> list[dict[str, str]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, str]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return found
        for m in msgs:
            body = json.loads(m["Body"])
            found.append({"subject": body.get("Subject", ""), "message": body.get("Message", "")})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
