"""What `outputs` and `status` show: how to reach the stack, the next start and stop, the last runs.

Read-only: ``outputs`` reads the host, its address and the key pair;
``status_lines`` adds the schedule from the config and the holidays package
(not read from the deployed functions) and the SSM history of the stack's
own documents.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.exceptions import ClientError

from provision import access, rules
from provision import config as config_mod
from provision.documents import document_name
from provision.engine import Context
from provision.errors import ProvisionError
from provision.instance import find_instance, public_address
from provision.keypair import find_key_pair, key_name, parameter_name


def outputs(ctx: Context) -> dict[str, Any]:
    """Bucket, host, key parameter, address and the ssh/scp lines, by name (``outputs --json``)."""
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


def status_lines(ctx: Context, now: dt.datetime) -> list[str]:
    """The `status` report: host, address, next start and stop, holidays passed over, sessions, calendar
    coverage, and the last start and stop runs."""
    cfg = ctx.cfg
    data = outputs(ctx)
    s = cfg.schedule
    calendar = rules.calendar(cfg, builder=ctx.options.get("calendar_builder"))
    start, skipped = next_run(calendar, s.start, now, "start")
    stop, _ = next_run(calendar, s.stop, now, "stop")
    instance = data["instance_id"] or "- (not created; run up)"
    ip_kind = "static (Elastic IP)" if data["static_ip"] else "changes on every start"
    lines = [
        f"stack       {ctx.stack} ({cfg.stack.region})",
        f"instance    {instance}  {data['instance_state'] or ''}".rstrip(),
        f"public ip   {data['public_ip'] or '-'}  {ip_kind if data['public_ip'] else ''}".rstrip(),
        f"next start  {start:%a %Y-%m-%d %H:%M} {s.timezone}",
        f"next stop   {stop:%a %Y-%m-%d %H:%M} {s.timezone}",
    ]
    lines += [f"            {day.day.isoformat()} skipped: {day.name} (exchange holiday)" for day in skipped]
    lines += _coming_sessions(cfg, calendar, now)
    until = calendar.covered_until()
    # Computed here from the config and the holidays package, not read from the deployed functions.
    warning = calendar.coverage_warning(now.date())
    lines.append(f"calendar    {cfg.calendar.exchange} holidays known up to {until.isoformat() if until else '-'} "
                 "(as of this config; the functions have the calendar of the last `up`)"
                 + (f"; warning: {warning}" if warning else ""))
    if data["instance_id"]:
        lines += _last_commands(ctx, data["instance_id"])
    return lines


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
