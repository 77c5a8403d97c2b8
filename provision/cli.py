"""``python -m provision plan|up|down|status|outputs|key|publish|start|stop|doctor|...`` (docs/PROVISION.md).

Every command validates the config first (no AWS call on a bad config).
Expected failures print one or two lines and exit 1, never a traceback, and
no command prints a secret.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    WaiterError,
)

from provision import access, doctor, network, operate, sessions, stack, status
from provision import config as config_mod
from provision.aws import Clients, describe_client_error
from provision.engine import Context, Plan
from provision.errors import ConfigError, ProvisionError
from provision.instance import host_disk_warning
from provision.keypair import key_name, write_private_key

ClientsFactory = Callable[[str], Clients]
#: The stack config's path when --config is not given (the playbooks and the inventory read it too).
CONFIG_ENV = "ST_STACK_CONFIG"


class _Out:
    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def error(self, text: str) -> None:
        print(f"error: {text}", file=self.err, flush=True)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help=f"the stack config (default: ${CONFIG_ENV}, else ./stack.yml)",
    )
    p = argparse.ArgumentParser(
        prog="python -m provision",
        parents=[common],
        description="Create, update, show and remove the AWS side of a SimpleTrader "
        "stack from one config file.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan = sub.add_parser("plan", parents=[common], help="show what up would change (read-only)")
    plan.add_argument("--json", action="store_true", help="machine-readable plan")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there is nothing to change, 2 when there is, 1 on error",
    )
    up = sub.add_parser("up", parents=[common], help="create or update every resource")
    up.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    down = sub.add_parser("down", parents=[common], help="remove the stack (keeps bucket and Elastic IP)")
    down.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    down.add_argument("--delete-bucket", action="store_true", help="also delete the bucket")
    down.add_argument(
        "--force", action="store_true", help="with --delete-bucket: delete it even if not empty"
    )
    down.add_argument(
        "--release-ip",
        action="store_true",
        help="also release the Elastic IP (your broker's registered IP is lost)",
    )
    sub.add_parser("status", parents=[common], help="host state, static IP, next start and stop")
    outputs = sub.add_parser("outputs", parents=[common], help="bucket, instance, key parameter, IP, ssh/scp")
    outputs.add_argument("--json", action="store_true")
    key = sub.add_parser("key", parents=[common], help="write the private key from SSM to a .pem (mode 0400)")
    key.add_argument("--out", type=Path, default=None, help="where to write it (default: ./<stack>-key.pem)")
    publish = sub.add_parser(
        "publish", parents=[common], help="upload code, requirements, wheels and secrets"
    )
    publish.add_argument(
        "--token",
        type=Path,
        default=None,
        metavar="FILE",
        help="only upload a new access token from FILE and update the manifest",
    )
    publish.add_argument(
        "--wheelhouse", type=Path, default=None, metavar="DIR", help="also upload the wheels in DIR"
    )
    publish.add_argument(
        "--sync",
        action="store_true",
        help="then, if the host is running, sync it now through SSM (as the start function does) and "
        "print the result; a stopped host is synced by its next start",
    )
    cost = sub.add_parser(
        "cost", parents=[common], help="the monthly bill the config implies, against running 24/7 (no AWS call)"
    )
    cost.add_argument("--prices", type=Path, default=None, metavar="FILE", help="YAML overriding the price table")
    cost.add_argument("--year", type=int, default=None, help="the calendar year to count trading days in")
    cost.add_argument("--json", action="store_true")
    start = sub.add_parser(
        "start", parents=[common], help="start the host now, as the start function does (calendar ignored)"
    )
    start.add_argument("--sync", action="store_true", help="also sync the workspace, as the 08:45 start does")
    start.add_argument(
        "--wait-ready", action="store_true", help="wait until Session Manager can reach the host (its SSM agent)"
    )
    stop = sub.add_parser("stop", parents=[common], help="stop the host now, as the stop function does")
    stop.add_argument(
        "--eod", action="store_true", help="run the end-of-day routine (closure, upload) first, as at 15:40"
    )
    config = sub.add_parser(
        "config", parents=[common],
        help="the checked config with defaults and derived values (what the playbooks read; no AWS call)",
    )
    config.add_argument("--json", action="store_true", help="one JSON document (the playbooks' input)")
    sub.add_parser(
        "doctor", parents=[common], help="check this machine can operate the stack, and say how to fix what is missing"
    )
    tunnel = sub.add_parser(
        "tunnel", parents=[common], help="SSH's ProxyCommand through Session Manager (inventory/ssm-tunnel runs it)"
    )
    tunnel.add_argument("--region", default=None, help="the instance's region (default: stack.region)")
    tunnel.add_argument("instance_id", metavar="INSTANCE_ID")
    tunnel.add_argument("port", metavar="PORT", type=int, nargs="?", default=22)
    return p


def main(
    argv: list[str] | None = None,
    *,
    clients: Clients | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    confirm: Callable[[str], str] | None = None,
    options: dict[str, Any] | None = None,
) -> int:
    """Run one command; return the exit code.

    ``clients`` lets a caller supply the client factory (e.g. with botocore
    event handlers registered); ``options`` passes engine options such as
    ``lambda_dir`` and ``calendar_builder``.
    """
    o = _Out(out or sys.stdout, err or sys.stderr)
    args = _parser().parse_args(argv)
    config_path = getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or config_mod.DEFAULT_CONFIG
    try:
        if args.command == "tunnel" and args.region:
            return cmd_tunnel_region(args, clients or Clients(args.region))
        cfg = config_mod.load(config_path)
        ctx = Context(cfg, clients or Clients(cfg.stack.region), options=dict(options or {}))
        handler = COMMANDS[args.command]
        return handler(ctx, args, o, confirm or input)
    except ConfigError as exc:
        o.error(str(exc))
        return 1
    except ProvisionError as exc:
        o.error(str(exc))
        return 1
    except ClientError as exc:
        o.error(describe_client_error(exc))
        return 1
    except WaiterError as exc:
        o.error(f"gave up waiting: {exc}. Re-run the same command; it continues where it stopped")
        return 1
    except (NoCredentialsError, NoRegionError) as exc:
        o.error(f"{exc}. Configure AWS credentials (aws configure, or AWS_PROFILE) and re-run")
        return 1
    except BotoCoreError as exc:
        o.error(f"{exc}. Re-run the same command once the problem is fixed")
        return 1
    except KeyboardInterrupt:
        o.error("interrupted; re-run the same command to continue where it stopped")
        return 130


# --------------------------------------------------------------------------- commands


def _confirm(o: _Out, confirm: Callable[[str], str], question: str) -> bool:
    try:
        answer = confirm(f"{question} Only 'yes' will be accepted: ")
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        o.line("Cancelled; nothing was changed.")
        return False
    return True


def _hints(ctx: Context, o: _Out) -> None:
    """A line on stderr for each local prerequisite that is missing (`doctor` has the whole list)."""
    for line in doctor.hints(ctx.cfg):
        print(line, file=o.err, flush=True)


def cmd_plan(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    network.ssh_ingress(ctx)  # an `auto` address is looked up before any AWS call
    _hints(ctx, o)
    plan = stack.engine().plan_up(ctx)
    if args.json:
        o.line(json.dumps(plan.as_json(), indent=2, sort_keys=True))
    else:
        o.line(plan.render())
        if sessions.changed_in(plan):
            o.line(f"The special sessions change: `up` sets their one-time schedules, but {sessions.HOST_HINT} "
                   "(after `up`); without it their jobs do not run.")
    if args.detailed_exitcode and not plan.empty:
        return 2
    return 0


def cmd_up(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    network.ssh_ingress(ctx)  # an `auto` address is looked up before any AWS call
    _hints(ctx, o)
    engine = stack.engine()
    plan = engine.plan_up(ctx)
    if plan.empty:
        o.line(plan.render())
        return 0
    o.line(plan.render())
    plan.check_applicable()
    if not args.yes and not _confirm(o, confirm, f"Apply these changes to stack {ctx.stack}?"):
        return 1
    engine.apply(ctx, o.line, plan)
    o.line(f"Stack {ctx.stack} is up to date. `python -m provision outputs` shows how to reach it.")
    if sessions.changed_in(plan):
        o.line(f"The special sessions changed: their one-time schedules are set, but {sessions.HOST_HINT}; "
               "run it now, or their jobs do not run.")
    return 0


def cmd_down(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    ctx.options.update(delete_bucket=args.delete_bucket, release_ip=args.release_ip, force=args.force)
    engine = stack.engine()
    plan = engine.plan_down(ctx)
    o.line(plan.render())
    if plan.empty:
        return 0
    # Refuse early (e.g. a non-empty bucket without --force), before asking.
    by_address = {r.address: r for r in engine.resources}
    for c in plan.changes:
        if c.action == "delete" and c.live is not None:
            by_address[c.address].check_delete(ctx, c.live)
    host = next((c.live for c in plan.changes if c.action == "delete" and c.address == "instance"), None)
    if host is not None:
        o.line(host_disk_warning(host.get("state")))
    if not args.yes and not _confirm(o, confirm, f"Destroy these resources of stack {ctx.stack}?"):
        return 1
    engine.destroy(ctx, plan, o.line)
    kept = [c.address for c in plan.changes if c.action == "noop"]
    o.line(f"Stack {ctx.stack} removed" + (f"; kept: {', '.join(kept)}." if kept else "."))
    return 0


def cmd_outputs(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    data = status.outputs(ctx)
    if args.json:
        o.line(json.dumps(data, indent=2, sort_keys=True))
        return 0
    width = max(len(k) for k in data)
    for k, v in data.items():
        o.line(f"{k.ljust(width)}  {'-' if v is None else v}")
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    for line in status.status_lines(ctx, dt.datetime.now(dt.timezone.utc)):
        o.line(line)
    return 0


def cmd_key(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    target: Path = args.out or Path(f"{key_name(ctx.stack)}.pem")
    name = write_private_key(ctx, target)
    data = status.outputs(ctx)
    lines = access.ssh_lines(ctx.cfg, data["instance_id"], data["public_ip"], str(target))
    o.line(f"Wrote the private key from {name} to {target} (mode 0400).")
    o.line(f"SSH:  {lines['ssh']}")
    o.line(f"SCP:  {lines['scp']}")
    if ctx.cfg.network.access == "ssm":
        o.line("(through Session Manager, no open port: needs session-manager-plugin; "
               "`python -m provision doctor` checks it)")
    elif not data["public_ip"]:
        o.line("(the host has no public IP right now; it gets one when it runs, or set instance.static_ip)")
    return 0


def cmd_publish(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    from provision.publish import publish_stack

    manifest = publish_stack(ctx, token=args.token, wheelhouse=args.wheelhouse, log=o.line)
    deploy = ctx.cfg.bucket.prefixes.as_dict()["deploy"]
    o.line(f"Published release {manifest.get('release')} to s3://{config_mod.bucket_name(ctx.cfg)}/{deploy}"
           "manifest.json")
    if args.sync:
        ok, last = operate.sync_now(ctx, o.line)
        if not ok:
            o.error(last)
            return 1
        o.line(last)
    return 0


def cmd_cost(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    from provision import cost as cost_mod

    result = cost_mod.monthly_cost(ctx.cfg, args.prices, year=args.year)
    o.line(json.dumps(result, indent=2, sort_keys=True, default=str) if args.json else cost_mod.render(result))
    return 0


def cmd_start(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    what = "start and sync" if args.sync else "start"
    o.line(f"Running the start function's code here ({what}; calendar ignored; notification marked manual) ...")
    result = operate.start(ctx, sync=args.sync, progress=o.line)
    _print_result(o, result)
    if args.wait_ready:
        o.line(f"Waiting for the SSM agent of {result['instance_id']} "
               f"(up to {ctx.cfg.schedule.agent_wait_seconds}s) ...")
        waited = operate.wait_agent_online(ctx, result["instance_id"], ctx.cfg.schedule.agent_wait_seconds)
        o.line(f"Host {result['instance_id']} is ready for Session Manager and Ansible (waited {waited:.0f}s).")
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    what = "end of day, then stop" if args.eod else "stop, without the end-of-day routine"
    o.line(f"Running the stop function's code here ({what}; notification marked manual) ...")
    _print_result(o, operate.stop(ctx, eod=args.eod, progress=o.line))
    return 0


def _print_result(o: _Out, result: dict[str, Any]) -> None:
    for warning in result.get("warnings", []):
        o.line(f"warning: {warning}")
    state = result.get("state_after") or result.get("state_before")
    o.line(f"{result['function'].capitalize()}: {result['outcome']}; instance {result['instance_id']} {state}. "
           + (f"Notified: {result['subject']}" if result.get("notified") else "No notification was sent."))


def cmd_config(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    from provision.export import export

    data = export(ctx.cfg)
    if args.json:
        o.line(json.dumps(data, indent=1, sort_keys=True))
        return 0

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k in sorted(value):
                walk(value[k], f"{path}.{k}" if path else k)
        else:
            o.line(f"{path} = {json.dumps(value)}")

    walk(data, "")
    return 0


def cmd_doctor(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    found = doctor.checks(ctx)
    for line in doctor.render(ctx, found):
        o.line(line)
    return 1 if any(c.failed for c in found) else 0


def cmd_tunnel(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    return _tunnel(ctx.clients, args)


def cmd_tunnel_region(args: argparse.Namespace, clients: Clients) -> int:
    return _tunnel(clients, args)


def _tunnel(clients: Clients, args: argparse.Namespace) -> int:
    access.open_tunnel(clients.ssm, clients.ec2, args.instance_id, args.port,
                       profile=os.environ.get("AWS_PROFILE", ""), sleep=clients.sleep)
    return 0


Handler = Callable[[Context, argparse.Namespace, _Out, Callable[[str], str]], int]
COMMANDS: dict[str, Handler] = {
    "plan": cmd_plan,
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "outputs": cmd_outputs,
    "key": cmd_key,
    "publish": cmd_publish,
    "cost": cmd_cost,
    "start": cmd_start,
    "stop": cmd_stop,
    "config": cmd_config,
    "doctor": cmd_doctor,
    "tunnel": cmd_tunnel,
}

__all__ = ["main", "Plan"]
