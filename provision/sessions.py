"""Special sessions at their own hours: one-time EventBridge Scheduler schedules (``at(...)``).

The weekly rules (:mod:`provision.schedule`) fire on ``schedule.weekdays`` at
``schedule.start``/``stop``. A special session on another weekday (a Sunday
Muhurat session), or with hours of its own (an 18:00 evening session), gets
a one-time schedule per firing instead, in the exchange's zone, in the
stack's schedule group ``<stack>-sessions``; nothing extra fires on other
weekends. The start function skips a weekly firing on such a day (its
calendar knows the session's hours), and the schedule's event names the
session (``{"session": "YYYY-MM-DD"}``), so that firing is not skipped.

Only firings still ahead are wanted: ``up`` removes the ones whose time has
passed (a schedule also deletes itself once it has fired). The schedules
invoke the functions with the role ``<stack>-sessions``, which may invoke
only the stack's two functions.

The host's side of a session (its dated cron entries, the job guard's list)
comes from Ansible, not from ``up``. The group carries a digest of the
sessions ``up`` last deployed (tag ``SpecialSessions``); when the config's
differ, ``plan`` and ``up`` say that ``ansible-playbook site.yml --tags cron``
must follow (:func:`changed_in`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from provision import export, tags
from provision.aws import paginate, unless_missing
from provision.config import Config
from provision.engine import UNKNOWN, Context, Diff, Plan, Resource
from provision.iam import Role, has_unknown
from provision.rules import WEEKDAYS


@dataclass(frozen=True)
class Firing:
    """One function invocation a special session needs at its own time."""

    date: str
    kind: str  # start | stop
    local_time: str  # exchange-local HH:MM

    @property
    def name(self) -> str:
        return f"{self.date}-{self.kind}"

    def at(self, zone: str) -> dt.datetime:
        h, m = (int(x) for x in self.local_time.split(":"))
        return dt.datetime.combine(dt.date.fromisoformat(self.date), dt.time(h, m), ZoneInfo(zone))


def firings(cfg: Config, now: dt.datetime | None = None) -> list[Firing]:
    """The one-time firings the special sessions still ahead need (the weekly rules do not cover them)."""
    s = cfg.schedule
    now = now or dt.datetime.now(dt.timezone.utc)
    found = []
    for session in cfg.calendar.special_sessions:
        weekday = WEEKDAYS[dt.date.fromisoformat(session.date).weekday()]
        own_start, own_stop = session.hours(s)
        for kind, own, default in (("start", own_start, s.start), ("stop", own_stop, s.stop)):
            if weekday in s.weekdays and own == default:
                continue  # the weekly rule fires then anyway
            firing = Firing(session.date, kind, own)
            if firing.at(s.timezone) > now:
                found.append(firing)
    return found


def group_name(stack: str) -> str:
    return tags.resource_name(stack, "sessions")


def digest(cfg: Config) -> str | None:
    """16 hex of a sha256 over what the host gets of the special sessions (``export.session_jobs``: date,
    name, hours with the schedule's filled in, each job's time that day); None without any."""
    items = sorted(json.dumps(s, sort_keys=True) for s in export.session_jobs(cfg))
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16] if items else None


DIGEST_ATTR = "sessions_digest"
HOST_HINT = ("the host's cron entries and the job guard's session list change only with "
             "`ansible-playbook site.yml --tags cron`")


def changed_in(plan: Plan) -> bool:
    """The plan changes the special sessions of a stack that exists (a new one needs all of site.yml anyway)."""
    return any(c.address == SessionSchedules.address and c.action == "update"
               and any(d.attr == DIGEST_ATTR for d in c.diffs) for c in plan.changes)


class SessionsRole(Role):
    """What the one-time schedules run as: may invoke the stack's two functions and nothing else."""

    address = "iam.sessions_role"
    kind = "sessions"
    service = "scheduler.amazonaws.com"

    def policy(self, ctx: Context) -> dict[str, Any]:
        arns = [ctx.id(f"{kind}_function_arn") for kind in ("start", "stop")]
        return {"Version": "2012-10-17", "Statement": [
            {"Sid": "InvokeTheStackFunctions", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
             "Resource": arns}]}


class SessionSchedules(Resource):
    """The schedule group ``<stack>-sessions`` and its one-time schedules."""

    address = "schedule.sessions"

    def label(self, ctx: Context) -> str:
        return group_name(ctx.stack)

    def find(self, ctx: Context) -> dict[str, Any] | None:
        sch, group = ctx.clients.client("scheduler"), self.label(ctx)
        found_group = unless_missing(lambda: sch.get_schedule_group(Name=group), "ResourceNotFoundException", None)
        if found_group is None or found_group.get("State") == "DELETING":  # its deletion is eventually consistent
            return None
        arn = found_group["Arn"]
        schedules = {}
        for item in paginate(sch, "list_schedules", "Schedules", GroupName=group):
            full = sch.get_schedule(Name=item["Name"], GroupName=group)
            schedules[item["Name"]] = self._shape(full)
        found = tags.from_aws(sch.list_tags_for_resource(ResourceArn=arn).get("Tags"))
        return {"arn": arn, "schedules": schedules,
                "tags": {k: found.get(k) for k in tags.resource_tags(ctx.stack, "sessions")},
                DIGEST_ATTR: found.get(tags.SESSIONS_DIGEST_KEY)}

    @staticmethod
    def _shape(schedule: dict[str, Any]) -> dict[str, Any]:
        target = schedule.get("Target") or {}
        return {"expression": schedule.get("ScheduleExpression"),
                "timezone": schedule.get("ScheduleExpressionTimezone"),
                "target": target.get("Arn"), "role": target.get("RoleArn"),
                "input": json.loads(target["Input"]) if target.get("Input") else None}

    def _wanted(self, ctx: Context) -> dict[str, Any]:
        zone = ctx.cfg.schedule.timezone
        found = {}
        for f in firings(ctx.cfg):
            at = f.at(zone)
            found[f.name] = {
                "expression": f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})", "timezone": zone,
                "target": ctx.id(f"{f.kind}_function_arn"), "role": ctx.id("sessions_role_arn"),
                "input": {"session": f.date, "time": at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
            }
        return found

    def desired(self, ctx: Context) -> dict[str, Any]:
        wanted = self._wanted(ctx)
        return {"schedules": UNKNOWN if has_unknown(wanted) else wanted,
                "tags": tags.resource_tags(ctx.stack, "sessions"), DIGEST_ATTR: digest(ctx.cfg)}

    def create(self, ctx: Context) -> None:
        ctx.clients.client("scheduler").create_schedule_group(
            Name=self.label(ctx), Tags=tags.to_aws(tags.resource_tags(ctx.stack, "sessions")))

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        sch = ctx.clients.client("scheduler")
        changed = {d.attr for d in diffs}
        if "tags" in changed:
            sch.tag_resource(ResourceArn=live["arn"], Tags=tags.to_aws(tags.resource_tags(ctx.stack, "sessions")))
        if "schedules" in changed:
            self._put_schedules(ctx, live)
        if DIGEST_ATTR in changed:  # last: an interrupted run leaves the old digest, and the next says it again
            want = digest(ctx.cfg)
            if want is None:
                sch.untag_resource(ResourceArn=live["arn"], TagKeys=[tags.SESSIONS_DIGEST_KEY])
            else:
                sch.tag_resource(ResourceArn=live["arn"], Tags=tags.to_aws({tags.SESSIONS_DIGEST_KEY: want}))

    def _put_schedules(self, ctx: Context, live: dict[str, Any]) -> None:
        sch, group = ctx.clients.client("scheduler"), self.label(ctx)
        wanted = self._wanted(ctx)
        for name in sorted(set(live["schedules"]) - set(wanted)):
            sch.delete_schedule(Name=name, GroupName=group)
        for name, spec in sorted(wanted.items()):
            if live["schedules"].get(name) == spec:
                continue
            kwargs = {"Name": name, "GroupName": group, "ScheduleExpression": spec["expression"],
                      "ScheduleExpressionTimezone": spec["timezone"], "FlexibleTimeWindow": {"Mode": "OFF"},
                      "Target": {"Arn": spec["target"], "RoleArn": spec["role"], "Input": json.dumps(spec["input"])},
                      "ActionAfterCompletion": "DELETE", "State": "ENABLED",
                      "Description": f"SimpleTrader {name.rsplit('-', 1)[1]} of the special session {name[:10]}"}
            if name in live["schedules"]:
                sch.update_schedule(**kwargs)
            else:
                sch.create_schedule(**kwargs)

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        sch, group = ctx.clients.client("scheduler"), self.label(ctx)
        for name in live["schedules"]:
            sch.delete_schedule(Name=name, GroupName=group)
        sch.delete_schedule_group(Name=group)
