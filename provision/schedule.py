"""EventBridge rules that run the start and stop Lambdas on trading days.

``schedule.start`` / ``schedule.stop`` are exchange-local times; the rules are
UTC crons from :func:`provision.cron.utc_schedule` (weekdays shift when the
UTC time falls on the previous or next day). Each rule targets its function,
and the function's resource policy lets ``events.amazonaws.com`` invoke it
only from that rule (``SourceArn``).
"""

from __future__ import annotations

import json
from typing import Any

from provision import tags
from provision.aws import error_code, paginate, unless_missing
from provision.config import WEEKDAYS, Config
from provision.cron import utc_schedule
from provision.engine import Context, Diff, Resource
from provision.lambdas import function_name

TARGET_ID = "lambda"


def rule_name(stack: str, kind: str) -> str:
    return tags.resource_name(stack, kind)


def rule_weekdays(cfg: Config) -> list[str]:
    """``schedule.weekdays``: a special session on another weekday, or with hours of its own, gets one-time
    schedules of its own (:mod:`provision.sessions`), so nothing extra fires on the other weeks."""
    return [d for d in WEEKDAYS if d in cfg.schedule.weekdays]


def schedule_expression(ctx: Context, kind: str) -> str:
    s = ctx.cfg.schedule
    expr, _ = utc_schedule(s.start if kind == "start" else s.stop, rule_weekdays(ctx.cfg), s.timezone)
    return expr


class Rule(Resource):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.address = f"schedule.{kind}"

    def label(self, ctx: Context) -> str:
        return rule_name(ctx.stack, self.kind)

    def _statement_id(self, ctx: Context) -> str:
        return f"{rule_name(ctx.stack, self.kind)}-rule"

    def find(self, ctx: Context) -> dict[str, Any] | None:
        ev, name = ctx.clients.events_client, self.label(ctx)
        rule = unless_missing(lambda: ev.describe_rule(Name=name), "ResourceNotFoundException", None)
        if rule is None:
            return None
        targets = sorted(
            f"{t['Id']}={t['Arn']}" for t in paginate(ev, "list_targets_by_rule", "Targets", Rule=name)
        )
        tagmap = tags.from_aws(ev.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags"))
        return {
            "arn": rule["Arn"],
            "schedule": rule.get("ScheduleExpression"),
            "state": rule.get("State"),
            "targets": targets,
            "permission": self._permission(ctx),
            "tags": {k: tagmap.get(k) for k in tags.resource_tags(ctx.stack, self.kind)},
        }

    def _permission(self, ctx: Context) -> str | None:
        """The SourceArn of our invoke permission on the function, if any."""
        text = unless_missing(lambda: ctx.clients.lambda_.get_policy(
            FunctionName=function_name(ctx.stack, self.kind))["Policy"], "ResourceNotFoundException", None)
        if text is None:
            return None
        policy = json.loads(text)
        for st in policy.get("Statement", []):
            if st.get("Sid") == self._statement_id(ctx):
                cond = st.get("Condition", {}).get("ArnLike", {})
                return str(cond.get("AWS:SourceArn") or cond.get("aws:SourceArn") or "") or None
        return None

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids[f"{self.kind}_rule_arn"] = live["arn"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        fn_arn = ctx.id(f"{self.kind}_function_arn")
        region, account = ctx.cfg.stack.region, ctx.clients.account_id
        arn = f"arn:{ctx.clients.partition}:events:{region}:{account}:rule/{self.label(ctx)}"
        return {
            "schedule": schedule_expression(ctx, self.kind),
            "state": "ENABLED",
            "targets": [f"{TARGET_ID}={fn_arn}"],
            "permission": arn,
            "tags": tags.resource_tags(ctx.stack, self.kind),
        }

    def _put_rule(self, ctx: Context) -> str:
        s = ctx.cfg.schedule
        local = s.start if self.kind == "start" else s.stop
        rule = ctx.clients.events_client.put_rule(
            Name=self.label(ctx),
            ScheduleExpression=schedule_expression(ctx, self.kind),
            State="ENABLED",
            Description=f"SimpleTrader {self.kind} at {local} {s.timezone} on {','.join(s.weekdays)}",
            Tags=tags.to_aws(tags.resource_tags(ctx.stack, self.kind)),
        )
        return str(rule["RuleArn"])

    def create(self, ctx: Context) -> None:
        self._put_rule(ctx)

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        ev, lam = ctx.clients.events_client, ctx.clients.lambda_
        changed = {d.attr for d in diffs}
        arn = live["arn"]
        if changed & {"schedule", "state"}:
            arn = self._put_rule(ctx)
        if "tags" in changed:
            ev.tag_resource(ResourceARN=arn, Tags=tags.to_aws(tags.resource_tags(ctx.stack, self.kind)))
        if "targets" in changed:
            fn_arn = ctx.need(f"{self.kind}_function_arn")
            stale = [t.split("=", 1)[0] for t in live["targets"] if t != f"{TARGET_ID}={fn_arn}"]
            if stale:
                ev.remove_targets(Rule=self.label(ctx), Ids=stale)
            ev.put_targets(Rule=self.label(ctx), Targets=[{"Id": TARGET_ID, "Arn": fn_arn}])
        if "permission" in changed:
            fn, sid = function_name(ctx.stack, self.kind), self._statement_id(ctx)
            if live["permission"] is not None:
                lam.remove_permission(FunctionName=fn, StatementId=sid)
            lam.add_permission(
                FunctionName=fn,
                StatementId=sid,
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=arn,
                SourceAccount=ctx.clients.account_id,
            )

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ev, name = ctx.clients.events_client, self.label(ctx)
        if live["targets"]:
            ev.remove_targets(Rule=name, Ids=[t.split("=", 1)[0] for t in live["targets"]])
        ev.delete_rule(Name=name)
        if live["permission"] is not None:
            try:
                ctx.clients.lambda_.remove_permission(
                    FunctionName=function_name(ctx.stack, self.kind), StatementId=self._statement_id(ctx)
                )
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
