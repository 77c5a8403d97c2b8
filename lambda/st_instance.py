"""The trading host's state for the start and stop functions: read it, wait for running or stopped.

The waits are botocore waiters bounded by the function's ``Budget``; a failed
wait raises ``StepFailed`` with the state the host is in and AWS's reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import WaiterError
from botocore.waiter import WaiterModel, create_waiter_with_client
from st_runtime import Budget, Clock, StepFailed

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


# What EC2's "Client.InternalError" on a start most often means (AWS's knowledge center, kms-iam-ec2-permission).
KMS_HINT = ("an encrypted root volume whose KMS key the starting role may not use: most often the account's "
            "default EBS key is a customer managed key; docs/TESTING.md says what to do")


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
            if reason and "Client.InternalError" in reason:
                detail += f"; {KMS_HINT}"
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
