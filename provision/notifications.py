"""Notifications: the SNS topic the Lambdas publish to, and an e-mail subscription if configured.

An e-mail subscription stays "pending confirmation" until the recipient
clicks the link AWS sends; a pending subscription cannot be removed through
the API (AWS drops it after three days), so it is shown but not diffed.
"""

from __future__ import annotations

from typing import Any

from provision import tags
from provision.aws import paginate
from provision.engine import Context, Diff, Resource


def topic_name(stack: str) -> str:
    return tags.resource_name(stack, "events")


def find_topic_arn(ctx: Context) -> str | None:
    suffix = f":{topic_name(ctx.stack)}"
    for t in paginate(ctx.clients.sns, "list_topics", "Topics"):
        if t["TopicArn"].endswith(suffix):
            return str(t["TopicArn"])
    return None


class Topic(Resource):
    address = "notifications.topic"

    def label(self, ctx: Context) -> str:
        return topic_name(ctx.stack)

    def find(self, ctx: Context) -> dict[str, Any] | None:
        arn = find_topic_arn(ctx)
        if arn is None:
            return None
        sns = ctx.clients.sns
        subs = list(paginate(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=arn))
        emails = {s["Endpoint"]: s["SubscriptionArn"] for s in subs if s.get("Protocol") == "email"}
        confirmed = {e: a for e, a in emails.items() if a.startswith("arn:")}
        pending = sorted(e for e in emails if e not in confirmed)
        tagmap = tags.from_aws(sns.list_tags_for_resource(ResourceArn=arn).get("Tags"))
        want = ctx.cfg.notifications.email
        return {
            "arn": arn,
            "tags": {k: tagmap.get(k) for k in tags.resource_tags(ctx.stack, "events")},
            # A pending subscription to the wanted address counts as subscribed.
            "email_subscriptions": sorted(set(confirmed) | ({want} & set(pending))),
            "subscription_arns": confirmed,
            "pending": pending,
        }

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["topic_arn"] = live["arn"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        email = ctx.cfg.notifications.email
        return {
            "tags": tags.resource_tags(ctx.stack, "events"),
            "email_subscriptions": [email] if email else [],
        }

    def create(self, ctx: Context) -> None:
        # CreateTopic is idempotent for the same name and attributes.
        ctx.clients.sns.create_topic(
            Name=topic_name(ctx.stack), Tags=tags.to_aws(tags.resource_tags(ctx.stack, "events"))
        )

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        sns = ctx.clients.sns
        for d in diffs:
            if d.attr == "tags":
                sns.tag_resource(
                    ResourceArn=live["arn"], Tags=tags.to_aws(tags.resource_tags(ctx.stack, "events"))
                )
            if d.attr == "email_subscriptions":
                want = set(d.new)
                for email, arn in live["subscription_arns"].items():
                    if email not in want:
                        sns.unsubscribe(SubscriptionArn=arn)
                for email in sorted(want - set(d.old or [])):
                    sns.subscribe(TopicArn=live["arn"], Protocol="email", Endpoint=email)

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.clients.sns.delete_topic(TopicArn=live["arn"])
