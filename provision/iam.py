"""IAM: two separate least-privilege roles.

- ``<stack>-instance`` (EC2, with an instance profile of the same name): read
  the bucket's deploy and secrets prefixes, write the logs and ledger
  prefixes, and the SSM agent's own actions (register, receive commands,
  Session Manager channels); plus ``secretsmanager:GetSecretValue`` on
  exactly ``instance.secrets`` and the managed policies of
  ``instance.extra_policy_arns`` (by ARN, AWS's or the account's own), when
  the operator lists any. Not AWS's ``AmazonSSMManagedInstanceCore``: it
  grants ``ssm:GetParameter(s)`` on every parameter, the SSH private key
  among them, to any process on the host. No ``ssm:GetParameter*`` at all, and an
  explicit Deny of reading the SSH key's parameters (and of reading any by
  path), which no policy the operator attaches can lift.
- ``<stack>-scheduler`` (the start/stop Lambdas): start/stop this one
  instance, send the stack's two SSM documents (``<stack>-sync``,
  ``<stack>-eod``; :mod:`provision.documents`) to it and nothing else (not
  ``AWS-RunShellScript``, which runs any shell command), read command results, publish
  to the stack's topic, read the access token object's metadata, and write
  its own log groups.

No statement uses a ``*`` action. ``"Resource": "*"`` appears only where AWS
offers no resource-level permission for the action; each such statement has a
Sid that says so (see ``STAR_RESOURCE_SIDS``), and a comment here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from provision import tags
from provision.aws import error_code, paginate, unless_missing
from provision.bucket import _normal
from provision.config import bucket_name
from provision.documents import document_arn
from provision.engine import UNKNOWN, Context, Diff, Resource
from provision.errors import ProvisionError
from provision.keypair import PARAMETER_PREFIX

#: Statements allowed to use ``"Resource": "*"``, because AWS has no resource scoping for their actions.
STAR_RESOURCE_SIDS = frozenset(
    {"DescribeHasNoResourceScope", "CommandResultsHaveNoResourceScope", "AgentMessagesHaveNoResourceScope",
     "ParametersByPathHaveNoResourceScope"}
)
#: The calls that return a parameter's value (denied on the SSH keys' parameters).
KEY_READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory")
#: What the SSM agent needs for Run Command and Session Manager (AmazonSSMManagedInstanceCore less
#: its parameter reads and the State Manager, inventory, patching and Distributor actions the stack
#: does not use). ec2messages carries Run Command; ssmmessages carries Session Manager (and Run
#: Command on newer agents).
AGENT_MESSAGE_ACTIONS = (
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)


def trust(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def instance_policy(ctx: Context) -> dict[str, Any]:
    part, bucket = ctx.clients.partition, bucket_name(ctx.cfg)
    region, account = ctx.cfg.stack.region, ctx.clients.account_id
    p = ctx.cfg.bucket.prefixes
    arn = f"arn:{part}:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            # The ledger is read back only to restore it on a fresh workspace (workspace sync).
            {"Sid": "ListReadablePrefixes", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn],
             "Condition": {"StringLike": {"s3:prefix": [f"{p.deploy}*", f"{p.secrets}*", f"{p.ledger}*"]}}},
            {"Sid": "ReadDeploySecretsLedger", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [f"{arn}/{p.deploy}*", f"{arn}/{p.secrets}*", f"{arn}/{p.ledger}*"]},
            {"Sid": "WriteLogsAndLedger", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": [f"{arn}/{p.logs}*", f"{arn}/{p.ledger}*"]},
            # The agent registers and reports its host's state (scoped to this account's instances).
            {"Sid": "AgentRegisters", "Effect": "Allow", "Action": ["ssm:UpdateInstanceInformation"],
             "Resource": [f"arn:{part}:ec2:{region}:{account}:instance/*"]},
            # The message and session channel actions support no resource-level permissions in IAM.
            {"Sid": "AgentMessagesHaveNoResourceScope", "Effect": "Allow", "Action": list(AGENT_MESSAGE_ACTIONS),
             "Resource": "*"},
            *_secrets_statement(ctx),
            # Whatever the operator attaches (instance.extra_policy_arns: AmazonSSMManagedInstanceCore,
            # ReadOnlyAccess, ...), an explicit Deny wins over every Allow: no process on the host reads
            # the SSH key's parameters, and none reads parameters by path, which would return them.
            {"Sid": "NeverTheSshKey", "Effect": "Deny", "Action": list(KEY_READS),
             "Resource": [f"arn:{part}:ssm:{region}:{account}:parameter{PARAMETER_PREFIX}*"]},
            # GetParametersByPath is scoped to the path asked for (/, /ec2, ...), not to what it returns.
            {"Sid": "ParametersByPathHaveNoResourceScope", "Effect": "Deny",
             "Action": ["ssm:GetParametersByPath"], "Resource": "*"},
        ],
    }


def secret_arns(ctx: Context) -> list[str]:
    """``instance.secrets`` as ARNs: a name gets the six-character suffix Secrets Manager adds to it."""
    part, region, account = ctx.clients.partition, ctx.cfg.stack.region, ctx.clients.account_id
    return [ref if ref.startswith("arn:") else f"arn:{part}:secretsmanager:{region}:{account}:secret:{ref}-??????"
            for ref in ctx.cfg.instance.secrets]


def _secrets_statement(ctx: Context) -> list[dict[str, Any]]:
    if not ctx.cfg.instance.secrets:
        return []
    return [{"Sid": "ReadTheListedSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
             "Resource": secret_arns(ctx)}]


def scheduler_policy(ctx: Context) -> dict[str, Any]:
    part, region, account = ctx.clients.partition, ctx.cfg.stack.region, ctx.clients.account_id
    instance = ctx.id("instance_id")
    instance_arn = f"arn:{part}:ec2:{region}:{account}:instance/{instance}"
    manifest_key = ctx.cfg.bucket.prefixes.deploy + "manifest.json"
    log_groups = [
        f"arn:{part}:logs:{region}:{account}:log-group:/aws/lambda/{ctx.stack}-{fn}"
        for fn in ("start", "stop")
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StartStopTheHost",
                "Effect": "Allow",
                "Action": ["ec2:StartInstances", "ec2:StopInstances"],
                "Resource": [instance_arn],
            },
            # DescribeInstances / DescribeInstanceStatus support no resource-level permissions in IAM.
            {
                "Sid": "DescribeHasNoResourceScope",
                "Effect": "Allow",
                "Action": ["ec2:DescribeInstanceStatus", "ec2:DescribeInstances"],
                "Resource": "*",
            },
            # SendCommand is authorized on the document and on the instance: only these two fixed
            # documents, only to this host.
            {
                "Sid": "SendTheStackDocumentsToTheHost",
                "Effect": "Allow",
                "Action": ["ssm:SendCommand"],
                "Resource": [instance_arn, document_arn(ctx, "sync"), document_arn(ctx, "eod")],
            },
            # GetCommandInvocation and CancelCommand (a command past its deadline) support no
            # resource-level permissions in IAM.
            {
                "Sid": "CommandResultsHaveNoResourceScope",
                "Effect": "Allow",
                "Action": ["ssm:CancelCommand", "ssm:GetCommandInvocation"],
                "Resource": "*",
            },
            {
                "Sid": "Notify",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": [f"{ctx.id('topic_arn')}"],
            },
            # Is the token fresh? The manifest records when it was published; the
            # function reads that one object and can read no secret.
            {
                "Sid": "TokenFreshness",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:{part}:s3:::{bucket_name(ctx.cfg)}/{manifest_key}"],
            },
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": log_groups + [f"{g}:*" for g in log_groups],
            },
        ],
    }


def _doc(value: Any) -> Any:
    if isinstance(value, str):
        value = json.loads(unquote(value))
    return _normal(value)


def has_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    if isinstance(value, str):
        return "(known after apply)" in value
    return False


class Role(Resource):
    """A role with one inline policy, managed policies (by ARN) and an optional instance profile."""

    kind = ""
    service = ""
    with_profile = False

    def managed(self, ctx: Context) -> list[str]:
        """ARNs of the managed policies the role should have (AWS's or the account's own)."""
        return []

    def name(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, self.kind)

    def label(self, ctx: Context) -> str:
        return self.name(ctx)

    def policy(self, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def find(self, ctx: Context) -> dict[str, Any] | None:
        iam, name = ctx.clients.iam, self.name(ctx)
        role = unless_missing(lambda: iam.get_role(RoleName=name)["Role"], "NoSuchEntity", None)
        if role is None:
            return None
        inline = {}
        for pname in paginate(iam, "list_role_policies", "PolicyNames", RoleName=name):
            inline[pname] = _doc(iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"])
        role_tags = tags.from_aws(iam.list_role_tags(RoleName=name).get("Tags"))
        attached = sorted(
            p["PolicyArn"]
            for p in paginate(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
        )
        live: dict[str, Any] = {
            "arn": role["Arn"],
            "trust": _doc(role["AssumeRolePolicyDocument"]),
            "inline_policies": inline,
            "managed_policies": attached,
            "tags": {k: role_tags.get(k) for k in tags.resource_tags(ctx.stack, self.kind)},
        }
        if self.with_profile:
            prof = unless_missing(lambda: iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"],
                                  "NoSuchEntity", None)
            live["profile_roles"] = sorted(r["RoleName"] for r in prof.get("Roles", [])) if prof else None
            if prof:
                live["profile_arn"] = prof["Arn"]
        return live

    def desired(self, ctx: Context) -> dict[str, Any]:
        policy = self.policy(ctx)
        want: dict[str, Any] = {
            "trust": _normal(trust(self.service)),
            # A policy naming what is not made yet (a plan from empty) is known only once it is.
            "inline_policies": UNKNOWN if has_unknown(policy) else {f"{self.name(ctx)}-access": _normal(policy)},
            "managed_policies": sorted(self.managed(ctx)),
            "tags": tags.resource_tags(ctx.stack, self.kind),
        }
        if self.with_profile:
            want["profile_roles"] = [self.name(ctx)]
        return want

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids[f"{self.kind}_role_arn"] = live["arn"]

    def create(self, ctx: Context) -> None:
        ctx.clients.iam.create_role(
            RoleName=self.name(ctx),
            AssumeRolePolicyDocument=json.dumps(trust(self.service)),
            Description=f"SimpleTrader {self.kind} role of stack {ctx.stack}",
            Tags=tags.to_aws(tags.resource_tags(ctx.stack, self.kind)),
        )

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        iam, name = ctx.clients.iam, self.name(ctx)
        for d in diffs:
            if d.attr == "trust":
                iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust(self.service)))
            elif d.attr == "inline_policies":
                for pname in live["inline_policies"]:
                    if pname not in d.new:
                        iam.delete_role_policy(RoleName=name, PolicyName=pname)
                for pname, doc in d.new.items():
                    if live["inline_policies"].get(pname) != doc:
                        iam.put_role_policy(
                            RoleName=name, PolicyName=pname, PolicyDocument=json.dumps(self.policy(ctx))
                        )
            elif d.attr == "managed_policies":
                for arn in sorted(set(live["managed_policies"]) - set(d.new)):
                    iam.detach_role_policy(RoleName=name, PolicyArn=arn)
                for arn in sorted(set(d.new) - set(live["managed_policies"])):
                    iam.attach_role_policy(RoleName=name, PolicyArn=arn)
            elif d.attr == "tags":
                iam.tag_role(RoleName=name, Tags=tags.to_aws(tags.resource_tags(ctx.stack, self.kind)))
            elif d.attr == "profile_roles":
                if live["profile_roles"] is None:
                    try:
                        iam.create_instance_profile(
                            InstanceProfileName=name,
                            Tags=tags.to_aws(tags.resource_tags(ctx.stack, self.kind)),
                        )
                    except Exception as exc:
                        if error_code(exc) != "EntityAlreadyExists":
                            raise
                for other in live["profile_roles"] or []:
                    if other != name:
                        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=other)
                if name not in (live["profile_roles"] or []):
                    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
                iam.get_waiter("instance_profile_exists").wait(InstanceProfileName=name)
                ctx.cache["new_instance_profile"] = True

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        iam, name = ctx.clients.iam, self.name(ctx)
        if self.with_profile and live.get("profile_roles") is not None:
            for r in live["profile_roles"]:
                iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=r)
            iam.delete_instance_profile(InstanceProfileName=name)
        for arn in live["managed_policies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        for pname in live["inline_policies"]:
            iam.delete_role_policy(RoleName=name, PolicyName=pname)
        iam.delete_role(RoleName=name)


class InstanceRole(Role):
    address = "iam.instance_role"
    kind = "instance"
    service = "ec2.amazonaws.com"
    with_profile = True

    def policy(self, ctx: Context) -> dict[str, Any]:
        return instance_policy(ctx)

    def managed(self, ctx: Context) -> list[str]:
        # Only what the operator lists (instance.extra_policy_arns); one attached by hand is drift.
        return list(ctx.cfg.instance.extra_policy_arns)

    def check_live(self, ctx: Context, live: dict[str, Any] | None) -> None:
        """Each listed policy exists: a mistyped ARN is found by plan, not by up half-way through."""
        attached = set(live["managed_policies"]) if live else set()
        for i, arn in enumerate(ctx.cfg.instance.extra_policy_arns):
            if arn in attached:
                continue
            try:
                ctx.clients.iam.get_policy(PolicyArn=arn)
            except Exception as exc:
                if error_code(exc) != "NoSuchEntity":
                    raise
                raise ProvisionError(
                    f"instance.extra_policy_arns[{i}]: {arn} does not exist; check its name and path "
                    f"(aws iam get-policy --policy-arn {arn}), or remove it. Nothing was changed."
                ) from None

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        super().publish(ctx, live)
        if live.get("profile_arn"):
            ctx.ids["instance_profile_arn"] = live["profile_arn"]


class SchedulerRole(Role):
    address = "iam.scheduler_role"
    kind = "scheduler"
    service = "lambda.amazonaws.com"

    def policy(self, ctx: Context) -> dict[str, Any]:
        return scheduler_policy(ctx)
