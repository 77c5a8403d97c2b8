"""The stack's own SSM Command documents: ``<stack>-sync`` and ``<stack>-eod``.

Each holds one fixed command line of the host routine (docs/CONTRACTS.md),
run as root by the SSM agent, and takes one parameter, ``executionTimeout``.
The start and stop functions and ``publish --sync`` send these documents by
name, and the scheduler role may send nothing else (:mod:`provision.iam`):
whoever can change a function's code or environment can run these two
commands on the host, not any shell command as ``AWS-RunShellScript`` would
allow.

Found by name (``describe_document``). The command run is the document's
*default* version: an update adds a version and makes it the default; a run
interrupted between the two finds the new content as the latest version and
only moves the default.
"""

from __future__ import annotations

import json
from typing import Any

from provision import tags
from provision.aws import error_code, unless_missing
from provision.bucket import _normal
from provision.engine import Context, Diff, Resource
from provision.errors import ProvisionError

#: The command line each document runs (the host routine's contract, docs/CONTRACTS.md).
COMMANDS = {"sync": "simpletrader-workspace sync", "eod": "simpletrader-workspace eod"}
PURPOSE = {"sync": "sync the trading workspace from the bucket", "eod": "run the end-of-day routine and upload"}
#: The one parameter a sender may set: the command's deadline in seconds (1-99999).
TIMEOUT_PATTERN = "^[1-9][0-9]{0,4}$"
DEFAULT_TIMEOUT_SECONDS = "600"


def document_name(stack: str, kind: str) -> str:
    return tags.resource_name(stack, kind)


def document_arn(ctx: Context, kind: str) -> str:
    part, region, account = ctx.clients.partition, ctx.cfg.stack.region, ctx.clients.account_id
    return f"arn:{part}:ssm:{region}:{account}:document/{document_name(ctx.stack, kind)}"


def content(stack: str, kind: str) -> dict[str, Any]:
    """The document: one aws:runShellScript step with the fixed command, an executionTimeout parameter."""
    return {
        "schemaVersion": "2.2",
        "description": f"SimpleTrader stack {stack}: {PURPOSE[kind]} ({COMMANDS[kind]}, as root).",
        "parameters": {
            "executionTimeout": {
                "type": "String",
                "default": DEFAULT_TIMEOUT_SECONDS,
                "description": "Seconds the command may run before it counts as failed.",
                "allowedPattern": TIMEOUT_PATTERN,
            }
        },
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": kind,
                "inputs": {"runCommand": [COMMANDS[kind]], "timeoutSeconds": "{{ executionTimeout }}"},
            }
        ],
    }


class Document(Resource):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.address = f"document.{kind}"

    def label(self, ctx: Context) -> str:
        return document_name(ctx.stack, self.kind)

    def _content(self, ctx: Context, version: str) -> Any:
        got = ctx.clients.ssm.get_document(Name=self.label(ctx), DocumentVersion=version)
        return _normal(got["Content"])

    def find(self, ctx: Context) -> dict[str, Any] | None:
        ssm, name = ctx.clients.ssm, self.label(ctx)
        doc = unless_missing(lambda: ssm.describe_document(Name=name)["Document"], "InvalidDocument", None)
        if doc is None:
            return None
        default, latest = str(doc["DefaultVersion"]), str(doc["LatestVersion"])
        found = tags.from_aws(ssm.list_tags_for_resource(ResourceType="Document", ResourceId=name).get("TagList"))
        return {
            "name": name,
            "type": doc.get("DocumentType"),
            "default_version": default,
            "latest_version": latest,
            "content": self._content(ctx, default),
            "latest_content": self._content(ctx, latest) if latest != default else None,
            "tags": {k: found.get(k) for k in tags.resource_tags(ctx.stack, self.kind)},
        }

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids[f"{self.kind}_document"] = live["name"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {
            "type": "Command",
            "content": _normal(content(ctx.stack, self.kind)),
            "tags": tags.resource_tags(ctx.stack, self.kind),
        }

    def create(self, ctx: Context) -> None:
        try:
            ctx.clients.ssm.create_document(
                Name=self.label(ctx),
                Content=json.dumps(content(ctx.stack, self.kind), indent=1),
                DocumentType="Command",
                DocumentFormat="JSON",
                Tags=tags.to_aws(tags.resource_tags(ctx.stack, self.kind)),
            )
        except Exception as exc:
            if error_code(exc) != "DocumentAlreadyExists":  # made by an interrupted run: the diff finishes it
                raise

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        ssm, name = ctx.clients.ssm, self.label(ctx)
        changed = {d.attr for d in diffs}
        if "type" in changed:
            raise ProvisionError(
                f"SSM document {name} exists but is a {live['type']} document, not a Command document; "
                "it is not this stack's. Delete or rename it, then re-run up")
        if "content" in changed:
            wanted = _normal(content(ctx.stack, self.kind))
            version = live["latest_version"]
            if live["latest_content"] != wanted:
                try:
                    version = ssm.update_document(
                        Name=name, Content=json.dumps(content(ctx.stack, self.kind), indent=1),
                        DocumentVersion="$LATEST", DocumentFormat="JSON",
                    )["DocumentDescription"]["DocumentVersion"]
                except Exception as exc:
                    # SSM refuses a version equal to an earlier one (e.g. ours, after a hand edit): reuse it.
                    if error_code(exc) != "DuplicateDocumentContent":
                        raise
                    version = self._version_with(ctx, wanted, live["latest_version"])
            ssm.update_document_default_version(Name=name, DocumentVersion=str(version))
        if "tags" in changed:
            ssm.add_tags_to_resource(ResourceType="Document", ResourceId=name,
                                     Tags=tags.to_aws(tags.resource_tags(ctx.stack, self.kind)))

    def _version_with(self, ctx: Context, wanted: Any, latest: str) -> str:
        """The newest version holding ``wanted`` (versions are numbered 1..latest; deleted ones are skipped)."""
        for n in range(int(latest), 0, -1):
            try:
                if self._content(ctx, str(n)) == wanted:
                    return str(n)
            except Exception as exc:
                if error_code(exc) != "InvalidDocumentVersion":
                    raise
        raise ProvisionError(f"SSM document {self.label(ctx)}: SSM says a version holds the wanted content, "
                             "but none was found; re-run up")

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.clients.ssm.delete_document(Name=self.label(ctx))
