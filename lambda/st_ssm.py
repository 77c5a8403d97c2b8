"""Running the stack's SSM documents on the host: send when the agent is ready, wait for the result.

``send_when_agent_ready`` retries InvalidInstanceId (the agent is not
registered yet) with a bounded backoff; ``wait_command`` polls to a final
status or the deadline, polling again through transient errors, and returns
a ``CommandResult`` whose warnings come from the routine's last line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from st_runtime import Clock, StepFailed, StepLog, describe_error

# Invocation statuses that may still change; anything else (Success, Failed, Cancelled,
# TimedOut, and any status a newer API adds) is final.
RUNNING_COMMAND_STATUSES = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
SSM_MIN_DELIVERY_TIMEOUT = 30
OUTPUT_TAIL_CHARS = 300

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
