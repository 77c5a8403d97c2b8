"""``provision start`` and ``provision stop``: the start and stop functions' own code, run here.

Outside the schedule (a cron time changed in the evening, a late token, a
check of the whole chain) the operator runs what the Lambdas run: the same
``run_start`` / ``run_stop`` from ``lambda/``, with the deployed function's
environment read back from AWS (the same instance, bucket, topic, commands
and deadlines), the calendar ignored and the notification marked
``(manual)``. They run in this process with the operator's credentials and
no function timeout. ``start`` syncs only with ``--sync``; ``stop`` runs the
end-of-day routine only with ``--eod``.

``--wait-ready`` waits until the host's SSM agent is online, so Session
Manager (and ``ansible-playbook site.yml`` through it) can reach the host.
``sync_now`` (``publish --sync``) sends the stack's sync document to a
running host, as the start function does, and waits for its last line.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from botocore.exceptions import ClientError

from provision import lambda_package
from provision.aws import error_code
from provision.documents import COMMANDS, document_name
from provision.engine import Context
from provision.errors import ProvisionError
from provision.instance import find_instance
from provision.lambdas import function_name

AGENT_POLL_SECONDS = 5.0


def lambda_module(name: str) -> ModuleType:
    """A module of ``lambda/`` (``start``, ``stop``, ``st_runtime``, ...), imported as the functions do."""
    where = str(lambda_package.LAMBDA_DIR)
    if where not in sys.path:
        sys.path.insert(0, where)
    return importlib.import_module(name)


def deployed_environment(ctx: Context, kind: str) -> dict[str, str]:
    """The environment the deployed ``<stack>-<kind>`` function runs with."""
    name = function_name(ctx.stack, kind)
    try:
        conf = ctx.clients.lambda_.get_function_configuration(FunctionName=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise ProvisionError(f"function {name} does not exist; run `python -m provision up` first") from None
        raise
    return dict((conf.get("Environment") or {}).get("Variables") or {})


class _Progress(logging.Handler):
    """Shows each step the function logs (one JSON line each) as one readable line."""

    def __init__(self, out: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = json.loads(record.getMessage())
        except ValueError:
            self.out(f"  {record.getMessage()}")
            return
        step = fields.pop("step", "?")
        level = fields.pop("level", "INFO")
        fields.pop("fn", None)
        shown = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "", [], {}))
        self.out(f"  {'' if level == 'INFO' else level.lower() + ': '}{step} {shown}".rstrip())


@dataclass
class Runner:
    """What both commands share: settings, clients, clock and the event of a manual run."""

    ctx: Context
    kind: str
    progress: Callable[[str], None]

    def settings(self) -> Any:
        st_settings = lambda_module("st_settings")
        try:
            return st_settings.load_settings(deployed_environment(self.ctx, self.kind))
        except st_settings.SettingsError as exc:
            raise ProvisionError(f"function {function_name(self.ctx.stack, self.kind)}: {exc}; run "
                                 "`python -m provision up` to repair it") from None

    def common(self) -> dict[str, Any]:
        rt = lambda_module("st_runtime")
        clock = rt.SystemClock()
        c = self.ctx.clients
        logger = logging.getLogger(f"simpletrader.manual.{self.kind}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.handlers[:] = [_Progress(self.progress)]
        return {"ec2": c.ec2, "ssm": c.ssm, "sns": c.sns, "clock": clock, "budget": rt.Budget(clock, None),
                "log": rt.StepLog(f"{self.kind} (manual)", logger=logger)}

    def event(self, **flags: bool) -> Any:
        return lambda_module("st_runtime").Event(time=None, force=True, manual=True, **flags)


def start(ctx: Context, *, sync: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """Start the host (and sync it with ``sync``); returns the function's result, raises on failure."""
    r = Runner(ctx, "start", progress)
    settings = r.settings()
    calendar = lambda_module("st_calendar").TradingCalendar.from_dict(
        lambda_package.calendar_for(ctx.cfg, ctx.options.get("calendar_builder")))
    return _run(lambda: lambda_module("start").run_start(
        event=r.event(sync=sync), settings=settings, s3=ctx.clients.s3, calendar=calendar, **r.common()))


def stop(ctx: Context, *, eod: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """Stop the host (after the end-of-day routine with ``eod``); returns the result, raises on failure."""
    r = Runner(ctx, "stop", progress)
    settings = r.settings()
    return _run(lambda: lambda_module("stop").run_stop(event=r.event(eod=eod), settings=settings, **r.common()))


def _run(call: Any) -> dict[str, Any]:
    rt = lambda_module("st_runtime")
    try:
        return dict(call())
    except rt.InvocationFailed as exc:
        raise ProvisionError(f"{exc}. {_notified(exc.result)}".rstrip()) from None


def _notified(result: dict[str, Any]) -> str:
    return f"Notified: {result['subject']}" if result.get("notified") else ""


def wait_agent_online(ctx: Context, instance_id: str, seconds: float) -> float:
    """Wait until the instance's SSM agent reports Online; return the seconds waited."""
    waited = 0.0
    while True:
        info = ctx.clients.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]).get("InstanceInformationList", [])
        status = info[0].get("PingStatus") if info else None
        if status == "Online":
            return waited
        if waited >= seconds:
            shown = status or "not registered"
            raise ProvisionError(
                f"the SSM agent of {instance_id} is not online after {waited:.0f}s (status: {shown}); check that "
                "the instance role is attached and the host has outbound HTTPS, then run "
                "`python -m provision start --wait-ready` again")
        ctx.clients.sleep(AGENT_POLL_SECONDS)
        waited += AGENT_POLL_SECONDS


# SSM's own floor for the delivery timeout of a command.
SSM_MIN_DELIVERY_TIMEOUT = 30
SYNC_POLL_SECONDS = 3.0
TERMINAL = ("Success", "Failed", "Cancelled", "TimedOut", "Cancelling")


def sync_now(ctx: Context, progress: Callable[[str], None]) -> tuple[bool, str]:
    """Run the stack's sync document on the running host through SSM and wait for it.

    The same document the start function sends (docs/CONTRACTS.md). Returns
    ``(ok, the line to end with)``; a host that is not running is not synced
    (its next start syncs it), which is ok. Its output never holds a secret
    (the routine prints key names and sizes only).
    """
    inst = find_instance(ctx)
    if not inst:
        raise ProvisionError("--sync: there is no trading host yet (run `python -m provision up`); "
                             "the release is published")
    iid, state = inst["InstanceId"], (inst.get("State") or {}).get("Name")
    if state != "running":
        return True, f"Host {iid} is {state}: not synced now; its next start syncs it"
    timeout = ctx.cfg.schedule.command_timeout_seconds
    ssm = ctx.clients.ssm
    document = document_name(ctx.stack, "sync")
    sent = ssm.send_command(
        InstanceIds=[iid],
        DocumentName=document,
        Parameters={"executionTimeout": [str(timeout)]},
        TimeoutSeconds=max(SSM_MIN_DELIVERY_TIMEOUT, timeout),
        Comment="provision publish --sync",
    )
    command_id = sent["Command"]["CommandId"]
    progress(f"Syncing host {iid} ({document}: {COMMANDS['sync']}, SSM command {command_id}) ...")
    waited = 0.0
    while True:
        try:
            inv = ssm.get_command_invocation(CommandId=command_id, InstanceId=iid)
        except ClientError as exc:
            if error_code(exc) != "InvocationDoesNotExist":
                raise
            inv = {"Status": "Pending"}
        status = str(inv.get("Status"))
        if status in TERMINAL:
            break
        if waited > timeout + 2 * SSM_MIN_DELIVERY_TIMEOUT:
            raise ProvisionError(f"--sync: SSM command {command_id} still {status} after {waited:.0f}s; see "
                                 "`python -m provision status` and the host's `simpletrader-workspace status`")
        ctx.clients.sleep(SYNC_POLL_SECONDS)
        waited += SYNC_POLL_SECONDS
    lines = str(inv.get("StandardOutputContent") or "").strip().splitlines()
    last = lines[-1] if lines else "(no output)"
    if status == "Success":
        return True, f"Host synced: {last}"
    return False, (f"the sync on host {iid} ended {status}: {last}. The host keeps its previous workspace; "
                   "fix the cause and run `publish --sync` again (or invoke the start function with "
                   '{"force": true})')
