"""The S3 bucket: create or adopt, then lock it down.

Name: :func:`provision.config.bucket_name` (``bucket.name`` + the
``s3_bucket_suffix`` environment variable). ``BucketAlreadyOwnedByYou``
adopts the bucket; a bucket owned by another account (``BucketAlreadyExists``
on create, 403 on ``head_bucket``) stops the run with a clear message. The
bucket comes first in the resource order, so that happens before anything
else is written. Every call after create passes ``ExpectedBucketOwner``.

Wanted state: all four public access blocks on, default encryption (SSE-S3),
versioning enabled, the stack's tags, and a policy (:func:`bucket_policy`)
that denies any request not made over TLS, reads of ``secrets/`` to every
principal but the instance role and the operators (:mod:`provision.operators`),
and writes or deletes in ``deploy/`` and ``secrets/`` to every principal but
the operators. The denies name principals by ``aws:PrincipalArn``, so they
hold whatever identity policy another principal of the account has (e.g.
ReadOnlyAccess). Each statement has its own Sid (``POLICY_SIDS``).

A lifecycle rule per prefix (``LIFECYCLE_IDS``) expires noncurrent versions
under ``deploy/`` and ``secrets/`` after ``bucket.noncurrent_version_days``;
trade logs and the ledger are never expired.

On a bucket adopted from the operator (the original app's bucket, made by
hand), the stack manages only its own parts and keeps every other one as it
is: policy statements by Sid, lifecycle rules by ID, tags by key. ``plan``
compares and shows only those parts.

``down`` keeps the bucket unless ``--delete-bucket``; a bucket with objects
(any version) also needs ``--force``.
"""

from __future__ import annotations

import json
from typing import Any

from provision import tags
from provision.aws import error_code, paginate, unless_missing
from provision.config import Prefixes, bucket_name
from provision.engine import Context, Diff, Resource
from provision.errors import ProvisionError
from provision.operators import operators

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


#: The Sids of the statements this stack owns in the bucket policy.
POLICY_SIDS = ("DenyInsecureTransport", "SecretsReadByHostAndOperatorsOnly", "DeployAndSecretsWrittenByOperatorsOnly")
#: The IDs of the lifecycle rules this stack owns, by the prefix they expire noncurrent versions under.
LIFECYCLE_IDS = {"deploy": "simpletrader-noncurrent-deploy", "secrets": "simpletrader-noncurrent-secrets"}


def lifecycle_rules(prefixes: Prefixes, days: int) -> list[dict[str, Any]]:
    """The stack's own lifecycle rules: noncurrent versions of deploy/ and secrets/ expire after ``days``."""
    return [{"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": getattr(prefixes, name)},
             "NoncurrentVersionExpiration": {"NoncurrentDays": days}}
            for name, rule_id in LIFECYCLE_IDS.items()]


def _ours(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [st for st in statements if st.get("Sid") in POLICY_SIDS]


def _theirs(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [st for st in statements if st.get("Sid") not in POLICY_SIDS]


def bucket_policy(partition: str, bucket: str, prefixes: Prefixes, host_role_arn: str,
                  operator_arns: tuple[str, ...]) -> dict[str, Any]:
    """The bucket's policy: TLS only; secrets read by the host and operators; deploy/secrets written by operators.

    ``aws:PrincipalArn`` is the role's ARN for any session of that role (the
    instance profile's included), and the user's ARN for an IAM user.
    """
    arn = f"arn:{partition}:s3:::{bucket}"
    secrets, deploy = f"{arn}/{prefixes.secrets}*", f"{arn}/{prefixes.deploy}*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": POLICY_SIDS[0],
                "Effect": "Deny",
                "Principal": "*",
                # Deny-all for plain HTTP is the documented TLS-only pattern; it grants nothing.
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": POLICY_SIDS[1],
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject*",
                "Resource": secrets,
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": [host_role_arn, *operator_arns]}},
            },
            {
                "Sid": POLICY_SIDS[2],
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObject*", "s3:DeleteObject*"],
                "Resource": [deploy, secrets],
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": list(operator_arns)}},
            },
        ],
    }


def wanted_policy(ctx: Context) -> dict[str, Any]:
    part = ctx.clients.partition
    host_role = f"arn:{part}:iam::{ctx.clients.account_id}:role/{tags.resource_name(ctx.stack, 'instance')}"
    return bucket_policy(part, bucket_name(ctx.cfg), ctx.cfg.bucket.prefixes, host_role, operators(ctx).arns)


def _normal(doc: Any) -> Any:
    """A policy document (dict or JSON text) in a canonical form: keys sorted, one-item lists as scalars."""
    return _canon(json.loads(doc) if isinstance(doc, str) else doc)


def _canon(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _canon(v) for k, v in sorted(doc.items())}
    if isinstance(doc, list):
        items = [_canon(v) for v in doc]
        if len(items) == 1 and not isinstance(items[0], dict):
            return items[0]
        return (
            sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
            if all(not isinstance(v, dict) for v in items)
            else items
        )
    return doc


class Bucket(Resource):
    address = "bucket"
    keep_unless = "delete_bucket"

    def label(self, ctx: Context) -> str:
        return bucket_name(ctx.cfg)

    def _owner(self, ctx: Context) -> dict[str, str]:
        return {"ExpectedBucketOwner": ctx.clients.account_id}

    def find(self, ctx: Context) -> dict[str, Any] | None:
        s3, name = ctx.clients.s3, bucket_name(ctx.cfg)
        owner = self._owner(ctx)
        try:
            s3.head_bucket(Bucket=name, **owner)
        except Exception as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return None
            if code in ("403", "AccessDenied", "Forbidden"):
                raise _taken(name) from None
            raise
        try:
            return self._read(ctx, name, owner)
        except Exception as exc:
            # S3 may still list a bucket deleted a moment ago, but answers NoSuchBucket for anything else.
            if error_code(exc) == "NoSuchBucket":
                return None
            raise

    def _read(self, ctx: Context, name: str, owner: dict[str, str]) -> dict[str, Any]:
        """The bucket's settings that the stack manages, and whose it is."""
        s3 = ctx.clients.s3
        live: dict[str, Any] = {"name": name}
        live["public_access_block"] = unless_missing(
            lambda: s3.get_public_access_block(Bucket=name, **owner)["PublicAccessBlockConfiguration"],
            "NoSuchPublicAccessBlockConfiguration",
            {},
        )
        enc = unless_missing(
            lambda: s3.get_bucket_encryption(Bucket=name, **owner)["ServerSideEncryptionConfiguration"][
                "Rules"
            ],
            "ServerSideEncryptionConfigurationNotFoundError",
            [],
        )
        live["encryption"] = sorted(
            {r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "") for r in enc} - {""}
        )
        live["versioning"] = s3.get_bucket_versioning(Bucket=name, **owner).get("Status", "Off")
        policy = unless_missing(
            lambda: s3.get_bucket_policy(Bucket=name, **owner)["Policy"], "NoSuchBucketPolicy", None
        )
        statements = json.loads(policy).get("Statement", []) if policy else []
        # Only the stack's own statements are compared; the operator's own (an Athena reader) are kept.
        live["policy"] = _normal({"Version": "2012-10-17", "Statement": _ours(statements)}) if policy else None
        live["other_statements"] = _theirs(statements)
        rules = unless_missing(lambda: s3.get_bucket_lifecycle_configuration(Bucket=name, **owner)["Rules"],
                               "NoSuchLifecycleConfiguration", [])
        live["lifecycle"] = _normal([r for r in rules if r.get("ID") in LIFECYCLE_IDS.values()])
        live["other_rules"] = [r for r in rules if r.get("ID") not in LIFECYCLE_IDS.values()]
        tagset = unless_missing(lambda: s3.get_bucket_tagging(Bucket=name, **owner)["TagSet"], "NoSuchTagSet", [])
        # Only our keys are compared: an adopted bucket may carry the operator's own tags.
        ours = tags.resource_tags(ctx.stack, "bucket")
        all_tags = tags.from_aws(tagset)
        other = all_tags.get(tags.STACK_KEY)
        if all_tags.get(tags.PROJECT_KEY) != tags.PROJECT_VALUE or not other or other == ctx.stack:
            other = None
        # Another stack's bucket is refused while that stack is up (its instance role is there); the bucket of
        # a stack that is down (`down` keeps it) is adopted as the original app's is: a stack renamed.
        up = other is not None and _stack_is_up(ctx, other)
        live["other_stack"] = other if up else None
        live["adopting_from"] = other if not up else None
        live["tags"] = {k: all_tags.get(k) for k in ours}
        live["all_tags"] = all_tags
        return live

    def check_live(self, ctx: Context, live: dict[str, Any] | None) -> None:
        if live is not None and live.get("other_stack"):
            raise _another_stacks(live["name"], live["other_stack"], ctx.stack)

    def owned(self, ctx: Context, live: dict[str, Any]) -> bool:
        return not live.get("other_stack")

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["bucket"] = live["name"]

    def note(self, ctx: Context, live: dict[str, Any] | None) -> str:
        other = (live or {}).get("adopting_from")
        return operators(ctx).describe() + (f"; adopting the bucket of stack {other!r}, which is down" if other else "")

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {
            "public_access_block": PUBLIC_ACCESS_BLOCK,
            "encryption": ["AES256"],
            "versioning": "Enabled",
            "policy": _normal(wanted_policy(ctx)),
            "lifecycle": _normal(self._rules(ctx)),
            "tags": tags.resource_tags(ctx.stack, "bucket"),
        }

    @staticmethod
    def _rules(ctx: Context) -> list[dict[str, Any]]:
        return lifecycle_rules(ctx.cfg.bucket.prefixes, ctx.cfg.bucket.noncurrent_version_days)

    def create(self, ctx: Context) -> None:
        s3, name = ctx.clients.s3, bucket_name(ctx.cfg)
        kwargs: dict[str, Any] = {"Bucket": name}
        if ctx.cfg.stack.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.cfg.stack.region}
        try:
            s3.create_bucket(**kwargs)
        except Exception as exc:
            code = error_code(exc)
            if code == "BucketAlreadyExists":
                raise _taken(name) from None
            if code != "BucketAlreadyOwnedByYou":
                raise
        s3.get_waiter("bucket_exists").wait(Bucket=name, **self._owner(ctx))

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        s3, name, owner = ctx.clients.s3, bucket_name(ctx.cfg), self._owner(ctx)
        changed = {d.attr for d in diffs}
        if "public_access_block" in changed:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK, **owner
            )
        if "encryption" in changed:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
                **owner,
            )
        if "versioning" in changed:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"}, **owner)
        if "policy" in changed:
            policy = wanted_policy(ctx)
            policy["Statement"] = live.get("other_statements", []) + policy["Statement"]
            s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy), **owner)
        if "lifecycle" in changed:
            # PutBucketLifecycleConfiguration replaces every rule: send the operator's own with ours.
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": live.get("other_rules", []) + self._rules(ctx)},
                **owner)
        if "tags" in changed:
            merged = dict(live["all_tags"])
            merged.update(tags.resource_tags(ctx.stack, "bucket"))
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags.to_aws(merged)}, **owner)

    def _versions(self, ctx: Context, name: str) -> list[dict[str, str]]:
        s3 = ctx.clients.s3
        out = []
        for kind in ("Versions", "DeleteMarkers"):
            for v in paginate(s3, "list_object_versions", kind, Bucket=name, **self._owner(ctx)):
                out.append({"Key": v["Key"], "VersionId": v["VersionId"]})
        return out

    def check_delete(self, ctx: Context, live: dict[str, Any]) -> None:
        if not ctx.options.get("force") and self._versions(ctx, live["name"]):
            raise ProvisionError(
                f"bucket {live['name']} is not empty (it holds releases, secrets, logs or "
                "ledgers); nothing was deleted. Add --force to delete it with every object "
                "version, or drop --delete-bucket to keep it"
            )

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        s3, name, owner = ctx.clients.s3, live["name"], self._owner(ctx)
        # The bucket is going away: drop its policy first so no deny statement blocks emptying it.
        s3.delete_bucket_policy(Bucket=name, **owner)
        versions = self._versions(ctx, name)
        for i in range(0, len(versions), 1000):
            result = s3.delete_objects(Bucket=name, Delete={"Objects": versions[i : i + 1000], "Quiet": True},
                                       **owner)
            if result.get("Errors"):
                first = result["Errors"][0]
                raise ProvisionError(
                    f"could not empty bucket {name}: {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message', '')}; fix access and re-run down")
        s3.delete_bucket(Bucket=name, **owner)


def _stack_is_up(ctx: Context, stack: str) -> bool:
    """Whether ``stack`` is up: its instance role (``<stack>-instance``) exists; ``down`` removes it."""
    try:
        ctx.clients.iam.get_role(RoleName=tags.resource_name(stack, "instance"))
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return False
        raise
    return True


def _another_stacks(name: str, other: str, stack: str) -> ProvisionError:
    return ProvisionError(
        f"bucket {name} belongs to stack {other!r} (its Stack tag), not to {stack!r}; nothing was changed. Two "
        "stacks cannot share a bucket: each one's policy lets only its own host read secrets/, and their trade "
        "logs and ledgers would mix. Give this stack a bucket of its own: set bucket.name in the stack config, "
        f"or export s3_bucket_suffix=-<name>. (If {other!r} is this stack under its old name, run `python -m "
        f"provision down` with stack.name: {other} first: the bucket is kept, and this stack then adopts it.)"
    )


def _taken(name: str) -> ProvisionError:
    return ProvisionError(
        f"bucket {name} already exists and belongs to another AWS account (bucket names are "
        "global); nothing was written. Choose a suffix: export s3_bucket_suffix=-<yourname>"
    )
