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

from provision import access, doctor, network, operate, releases, rules, sessions, stack
from provision import config as config_mod
from provision.aws import Clients, error_code, error_message
from provision.engine import Context, Plan
from provision.errors import ConfigError, ProvisionError
from provision.instance import find_instance, public_address
from provision.keypair import find_key_pair, key_name, parameter_name, read_private_key

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
        o.error(_describe_client_error(exc))
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


def _describe_client_error(exc: ClientError) -> str:
    code, message = error_code(exc), error_message(exc)
    op = exc.operation_name
    attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    tried = f" (gave up after {attempts + 1} attempts)" if attempts else ""
    if code in (
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "ThrottledException",
    ):
        return (
            f"AWS is throttling {op} ({code}){tried}. Nothing is lost: wait a minute and re-run the same "
            "command; it continues where it stopped"
        )
    if code in (
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
    ):
        return f"{op}: {code}: {message}. Check the AWS credentials and their permissions, then re-run"
    return f"{op} failed: {code}: {message}{tried}. Fix the cause and re-run the same command"


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


def host_disk_warning(state: str | None) -> str:
    """What goes with the host's disk: said before down asks, and printed with --yes too."""
    text = ("The host's disk is deleted with it: trade data no end of day uploaded (`python -m provision stop "
            "--eod` uploads it, then stops the host) and the job logs eod has not uploaded yet are lost.")
    if state not in ("stopped", "terminated", "shutting-down"):
        text += (f" The host is {state}: if it traded today, run `python -m provision stop --eod` first, or "
                 "today's trades are lost with it.")
    return text


def _outputs(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    inst = find_instance(ctx)
    ip, static = public_address(ctx, inst)
    pair = find_key_pair(ctx.clients.ec2, ctx.stack)
    pem = f"{key_name(ctx.stack)}.pem"
    param = parameter_name(pair["KeyPairId"]) if pair else None
    instance_id = (inst or {}).get("InstanceId")
    return {
        "stack": ctx.stack,
        "region": cfg.stack.region,
        "bucket": config_mod.bucket_name(cfg),
        "instance_id": instance_id,
        "instance_state": ((inst or {}).get("State") or {}).get("Name"),
        "key_pair": key_name(ctx.stack) if pair else None,
        "key_parameter": param,
        "public_ip": ip,
        "static_ip": static,
        "key_command": f"python -m provision key --out {pem}",
        "key_command_aws_cli": (
            f'aws ssm get-parameter --name "{param}" --with-decryption '
            f'--query "Parameter.Value" --output text > {pem} && chmod 400 {pem}'
        )
        if param
        else None,
        "functions": {"start": f"{ctx.stack}-start", "stop": f"{ctx.stack}-stop"},
        "access": cfg.network.access,
        **access.ssh_lines(cfg, instance_id, ip, pem),
    }


def cmd_outputs(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    data = _outputs(ctx)
    if args.json:
        o.line(json.dumps(data, indent=2, sort_keys=True))
        return 0
    width = max(len(k) for k in data)
    for k, v in data.items():
        o.line(f"{k.ljust(width)}  {'-' if v is None else v}")
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    cfg = ctx.cfg
    data = _outputs(ctx)
    s = cfg.schedule
    now = dt.datetime.now(dt.timezone.utc)
    calendar = rules.calendar(cfg, builder=ctx.options.get("calendar_builder"))
    start, skipped = next_run(calendar, s.start, now, "start")
    stop, _ = next_run(calendar, s.stop, now, "stop")
    o.line(f"stack       {ctx.stack} ({cfg.stack.region})")
    instance = data["instance_id"] or "- (not created; run up)"
    o.line(f"instance    {instance}  {data['instance_state'] or ''}".rstrip())
    ip_kind = "static (Elastic IP)" if data["static_ip"] else "changes on every start"
    o.line(f"public ip   {data['public_ip'] or '-'}  {ip_kind if data['public_ip'] else ''}".rstrip())
    o.line(f"next start  {start:%a %Y-%m-%d %H:%M} {s.timezone}")
    o.line(f"next stop   {stop:%a %Y-%m-%d %H:%M} {s.timezone}")
    for day in skipped:
        o.line(f"            {day.day.isoformat()} skipped: {day.name} (exchange holiday)")
    for line in _coming_sessions(cfg, calendar, now):
        o.line(line)
    until = calendar.covered_until()
    # Computed here from the config and the holidays package, not read from the deployed functions.
    warning = calendar.coverage_warning(now.date())
    o.line(f"calendar    {cfg.calendar.exchange} holidays known up to {until.isoformat() if until else '-'} "
           "(as of this config; the functions have the calendar of the last `up`)"
           + (f"; warning: {warning}" if warning else ""))
    if data["instance_id"]:
        for line in _last_commands(ctx, data["instance_id"]):
            o.line(line)
    return 0


def _coming_sessions(cfg: config_mod.Config, calendar: Any, now: dt.datetime) -> list[str]:
    """One line per special session still ahead, with its hours."""
    s = cfg.schedule
    today = now.astimezone(calendar.zone).date().isoformat()
    return [f"session     {x.date} {x.name}: {'-'.join(x.hours(s))} {s.timezone}"
            + (f", jobs {', '.join(f'{k} {v}' for k, v in x.jobs.items())}" if x.jobs else "")
            for x in cfg.calendar.special_sessions if x.date >= today]


def next_run(calendar: Any, local: str, now: dt.datetime, kind: str = "start") -> tuple[dt.datetime, list[Any]]:
    """The next start (or stop) after ``now`` on a trading day of the rule: at ``local`` (exchange-local
    ``HH:MM``), or at a special session's own time; and the holidays passed over before it."""
    zone = calendar.zone
    day = now.astimezone(zone).date()
    skipped: list[Any] = []
    for _ in range(400):
        decision, passed = calendar.next_open(day)
        skipped += passed
        at = calendar.own_hours(decision.day, kind) or local
        hour, minute = (int(x) for x in at.split(":"))
        when = dt.datetime.combine(decision.day, dt.time(hour, minute), zone)
        if when > now:
            return when, skipped
        day = decision.day + dt.timedelta(days=1)
    raise ProvisionError("no trading day in the calendar ahead; refresh it with `python -m provision up`")


def _last_commands(ctx: Context, instance_id: str) -> list[str]:
    """The last sync / end-of-day command results the SSM history shows, if any."""
    from provision.documents import document_name

    try:
        commands = ctx.clients.ssm.list_commands(InstanceId=instance_id, MaxResults=50).get("Commands", [])
    except ClientError:
        return ["last runs  (SSM command history not readable)"]
    lines = []
    for label, kind in (("last start", "sync"), ("last stop", "eod")):
        wanted = document_name(ctx.stack, kind)
        runs = [c for c in commands if c.get("DocumentName") == wanted]
        runs.sort(key=lambda c: c.get("RequestedDateTime") or dt.datetime.min.replace(tzinfo=dt.timezone.utc))
        if runs:
            last = runs[-1]
            when = last.get("RequestedDateTime")
            when_s = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if when else "?"
            lines.append(f"{label.ljust(11)} {last.get('Status', '?')} ({when_s}, {wanted})")
        else:
            lines.append(f"{label.ljust(11)} - (no run of {wanted} in the SSM history)")
    return lines


def cmd_key(ctx: Context, args: argparse.Namespace, o: _Out, confirm: Callable[[str], str]) -> int:
    target: Path = args.out or Path(f"{key_name(ctx.stack)}.pem")
    if target.exists():
        raise ProvisionError(
            f"{target} already exists; not overwriting it. Remove it or pass --out OTHER.pem"
        )
    name, private = read_private_key(ctx)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    except FileExistsError:
        raise ProvisionError(f"{target} already exists; not overwriting it") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(private if private.endswith("\n") else private + "\n")
    os.chmod(target, 0o400)
    data = _outputs(ctx)
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
    from provision import publish as publish_mod

    cfg = ctx.cfg
    bucket = config_mod.bucket_name(cfg)
    prefixes = cfg.bucket.prefixes.as_dict()
    s3 = ctx.clients.s3
    owner = ctx.clients.account_id  # every S3 call names the bucket's expected owner
    if args.token is not None:
        manifest = publish_mod.publish_token(
            s3, bucket=bucket, prefixes=prefixes, token_file=args.token, log=o.line, expected_owner=owner
        )
    else:
        a = cfg.artifacts
        _warn_missing_closure(cfg, o)
        manifest = publish_mod.publish(
            s3,
            bucket=bucket,
            prefixes=prefixes,
            code_dir=cfg.artifact_path(a.code_dir),
            requirements=cfg.artifact_path(a.requirements),
            keys_file=cfg.artifact_path(a.keys_file),
            token_file=cfg.artifact_path(a.token_file),
            wheelhouse=args.wheelhouse,
            platforms=publish_mod.host_platforms(cfg.instance.architecture),
            log=o.line,
            expected_owner=owner,
            token_required=cfg.host.token_check != "off",  # noqa: S105 - a mode, not a secret
        )
        releases.prune(s3, bucket, prefixes["deploy"], cfg.bucket.keep_releases, str(manifest["release"]), o.line,
                       owner)
    o.line(f"Published release {manifest.get('release')} to s3://{bucket}/{prefixes['deploy']}manifest.json")
    if args.sync:
        return _sync_now(ctx, o)
    return 0


def _warn_missing_closure(cfg: config_mod.Config, o: _Out) -> None:
    """The code to publish lacks the configured closure script: the end of day would skip it."""
    script = cfg.eod.closure_script
    code_dir = cfg.artifact_path(cfg.artifacts.code_dir)
    if script and not (code_dir / script).is_file():
        o.line(f"warning: eod.closure_script {script} is not in {code_dir}; the end of day will skip it and the "
               "stop notification will say so. Add the script, or set eod.closure_script to the right path "
               '(or "" for none)')


# SSM's own floor for the delivery timeout of a command.
SSM_MIN_DELIVERY_TIMEOUT = 30
SYNC_POLL_SECONDS = 3.0
TERMINAL = ("Success", "Failed", "Cancelled", "TimedOut", "Cancelling")


def _sync_now(ctx: Context, o: _Out) -> int:
    """Run the stack's sync document on the running host through SSM, wait for it, print its last line.

    The same document the start function sends (docs/CONTRACTS.md). Its output
    never holds a secret (the routine prints key names and sizes only).
    """
    from provision.documents import COMMANDS, document_name

    inst = find_instance(ctx)
    if not inst:
        raise ProvisionError("--sync: there is no trading host yet (run `python -m provision up`); "
                             "the release is published")
    iid, state = inst["InstanceId"], (inst.get("State") or {}).get("Name")
    if state != "running":
        o.line(f"Host {iid} is {state}: not synced now; its next start syncs it")
        return 0
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
    o.line(f"Syncing host {iid} ({document}: {COMMANDS['sync']}, SSM command {command_id}) ...")
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
        o.line(f"Host synced: {last}")
        return 0
    o.error(f"the sync on host {iid} ended {status}: {last}. The host keeps its previous workspace; "
            "fix the cause and run `publish --sync` again (or invoke the start function with "
            '{"force": true})')
    return 1


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
                       profile=os.environ.get("AWS_PROFILE", ""))
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
