"""The start and stop Lambdas.

Both run the same deterministic zip (:mod:`provision.lambda_package`) with
handlers ``start.handler`` / ``stop.handler`` and the environment of
docs/CONTRACTS.md ("Lambda environment"); no secret is ever in it. Code is
updated only when the zip's sha256 differs from the live ``CodeSha256``,
configuration only when an attribute differs. Creating a function right after
its role may fail with "The role defined for the function cannot be assumed
by Lambda" while IAM propagates; that one error is retried, bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provision import lambda_package, tags
from provision.aws import error_code, retry_on, unless_missing
from provision.config import DEFAULT_CONFIG, Config, bucket_name
from provision.config import load as load_config
from provision.documents import document_name
from provision.engine import Context, Diff, Resource

RUNTIME = "python3.12"
TIMEOUT_SECONDS = 900
MEMORY_MB = 256
# Lambda retries a failed asynchronous (EventBridge) invocation twice by default.
# start: one more try can still save the trading day (a transient sync failure);
# stop: a retry would only find the instance stopped and report that instead of
# the failure that was already notified.
RETRIES = {"start": 1, "stop": 0}
ROLE_NOT_READY = [("InvalidParameterValueException", "cannot be assumed by Lambda")]


def function_name(stack: str, kind: str) -> str:
    return tags.resource_name(stack, kind)


def environment(ctx: Context) -> dict[str, str]:
    cfg = ctx.cfg
    return {
        "ST_INSTANCE_ID": f"{ctx.id('instance_id')}",
        "ST_BUCKET": bucket_name(cfg),
        "ST_TOPIC_ARN": f"{ctx.id('topic_arn')}",
        "ST_TIMEZONE": cfg.schedule.timezone,
        "ST_SYNC_DOCUMENT": document_name(ctx.stack, "sync"),
        "ST_EOD_DOCUMENT": document_name(ctx.stack, "eod"),
        "ST_TOKEN_KEY": cfg.bucket.prefixes.secrets + "access_token.txt",
        "ST_MANIFEST_KEY": cfg.bucket.prefixes.deploy + "manifest.json",
        "ST_TOKEN_FRESH_AFTER": cfg.host.token_fresh_after,
        "ST_TOKEN_CHECK": cfg.host.token_check,
        "ST_AGENT_WAIT_SECONDS": str(cfg.schedule.agent_wait_seconds),
        "ST_COMMAND_TIMEOUT_SECONDS": str(cfg.schedule.command_timeout_seconds),
    }


def package(ctx: Context) -> lambda_package.Package:
    if "lambda_package" not in ctx.cache:
        ctx.cache["lambda_package"] = lambda_package.build(
            ctx.cfg,
            ctx.options.get("lambda_dir") or lambda_package.LAMBDA_DIR,
            ctx.options.get("calendar_builder"),
        )
    pkg: lambda_package.Package = ctx.cache["lambda_package"]
    return pkg


def build_package(cfg: Config | None = None, lambda_dir: Path | None = None) -> bytes:
    """The zip bytes ``up`` deploys (same bytes for the same sources and calendar years).

    Without ``cfg``, reads ./stack.yml (or the repository's stack.yml).
    """
    if cfg is None:
        path = Path(DEFAULT_CONFIG)
        cfg = load_config(path if path.exists() else lambda_package.LAMBDA_DIR.parent / DEFAULT_CONFIG)
    return lambda_package.build(cfg, lambda_dir or lambda_package.LAMBDA_DIR).data


class Function(Resource):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.address = f"lambda.{kind}"

    def label(self, ctx: Context) -> str:
        return function_name(ctx.stack, self.kind)

    def find(self, ctx: Context) -> dict[str, Any] | None:
        fn = unless_missing(lambda: ctx.clients.lambda_.get_function(FunctionName=self.label(ctx)),
                            "ResourceNotFoundException", None)
        if fn is None:
            return None
        c = fn["Configuration"]
        return {
            "arn": c["FunctionArn"],
            "runtime": c.get("Runtime"),
            "handler": c.get("Handler"),
            "role": c.get("Role"),
            "timeout": c.get("Timeout"),
            "memory": c.get("MemorySize"),
            "environment": (c.get("Environment") or {}).get("Variables", {}),
            "code_sha256": c.get("CodeSha256"),
            "tags": {k: (fn.get("Tags") or {}).get(k) for k in tags.resource_tags(ctx.stack, self.kind)},
            "retries": self._retries(ctx),
        }

    def _retries(self, ctx: Context) -> int:
        """MaximumRetryAttempts for asynchronous invocations (2 when never set: Lambda's default)."""
        conf = unless_missing(lambda: ctx.clients.lambda_.get_function_event_invoke_config(
            FunctionName=self.label(ctx)), "ResourceNotFoundException", {})
        return int(conf.get("MaximumRetryAttempts", 2))

    def _put_retries(self, ctx: Context) -> None:
        ctx.clients.lambda_.put_function_event_invoke_config(
            FunctionName=self.label(ctx), MaximumRetryAttempts=RETRIES[self.kind]
        )

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids[f"{self.kind}_function_arn"] = live["arn"]

    def _config(self, ctx: Context) -> dict[str, Any]:
        return {
            "runtime": RUNTIME,
            "handler": f"{self.kind}.handler",
            "role": ctx.id("scheduler_role_arn"),
            "timeout": TIMEOUT_SECONDS,
            "memory": MEMORY_MB,
            "environment": environment(ctx),
        }

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {
            **self._config(ctx),
            "code_sha256": package(ctx).sha256_b64,
            "tags": tags.resource_tags(ctx.stack, self.kind),
            "retries": RETRIES[self.kind],
        }

    def create(self, ctx: Context) -> None:
        lam = ctx.clients.lambda_
        want = self._config(ctx)
        name = self.label(ctx)

        def call() -> Any:
            return lam.create_function(
                FunctionName=name,
                Runtime=RUNTIME,
                Role=ctx.need("scheduler_role_arn"),
                Handler=want["handler"],
                Code={"ZipFile": package(ctx).data},
                Timeout=TIMEOUT_SECONDS,
                MemorySize=MEMORY_MB,
                Environment={"Variables": want["environment"]},
                Description=f"SimpleTrader {self.kind} of stack {ctx.stack}",
                Architectures=["x86_64"],
                Tags=tags.resource_tags(ctx.stack, self.kind),
            )

        try:
            retry_on(ROLE_NOT_READY, call, attempts=10, delay=2.0, sleep=ctx.clients.sleep)
        except Exception as exc:
            if error_code(exc) != "ResourceConflictException":  # created by an interrupted run
                raise
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        self._put_retries(ctx)

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        lam, name = ctx.clients.lambda_, self.label(ctx)
        changed = {d.attr for d in diffs}
        # A function still being created or updated (e.g. by an interrupted run) refuses changes.
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        if "code_sha256" in changed:
            lam.update_function_code(FunctionName=name, ZipFile=package(ctx).data)
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        if changed & {"runtime", "handler", "role", "timeout", "memory", "environment"}:
            want = self._config(ctx)
            retry_on(
                ROLE_NOT_READY,
                lambda: lam.update_function_configuration(
                    FunctionName=name,
                    Runtime=RUNTIME,
                    Role=ctx.need("scheduler_role_arn"),
                    Handler=want["handler"],
                    Timeout=TIMEOUT_SECONDS,
                    MemorySize=MEMORY_MB,
                    Environment={"Variables": want["environment"]},
                ),
                attempts=10,
                delay=2.0,
                sleep=ctx.clients.sleep,
            )
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        if "tags" in changed:
            lam.tag_resource(Resource=live["arn"], Tags=tags.resource_tags(ctx.stack, self.kind))
        if "retries" in changed:
            self._put_retries(ctx)

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.clients.lambda_.delete_function(FunctionName=self.label(ctx))
