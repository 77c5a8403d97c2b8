"""The EC2 key pair, whose private half lives only in SSM Parameter Store.

The private key is kept as a SecureString under ``/ec2/keypair/<key-pair-id>``
(the path the original README's ``aws ssm get-parameter`` command uses). The
key pair id is only known after EC2 has imported the public key, yet the key
must be safe in SSM *before* EC2 knows the public half. So the order is:

1. Generate an Ed25519 key locally, in memory (never written to disk here).
2. Store the private key as a SecureString under the *pending* name
   ``/ec2/keypair/pending/<stack>-key`` (create-only, never overwritten).
3. ``import_key_pair`` with the public key derived from the pending parameter.
4. Copy the private key to ``/ec2/keypair/<key-pair-id>``.
5. Delete the pending parameter.

A crash anywhere leaves a state the next run finishes:

- after 2: the pending key is re-used (step 1 is skipped), then 3-5;
- after 3: the key pair's public key matches the pending one, so 4-5 run;
- after 4: only 5 runs.

A key pair whose private key is in neither place (made by hand, or its
parameter deleted) cannot be recovered; ``plan``/``up`` stop with the fix.
``down`` deletes the key pair first, then the parameters, so a crash there
leaves at most a parameter without a key pair, which the next run removes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provision import tags
from provision.aws import error_code, paginate, unless_missing
from provision.engine import Context, Diff, Resource
from provision.errors import ProvisionError

PARAMETER_PREFIX = "/ec2/keypair/"


def key_name(stack: str) -> str:
    return tags.resource_name(stack, "key")


def parameter_name(key_pair_id: str) -> str:
    """Where the private key of ``key_pair_id`` lives (SecureString)."""
    return f"{PARAMETER_PREFIX}{key_pair_id}"


def pending_parameter_name(stack: str) -> str:
    return f"{PARAMETER_PREFIX}pending/{key_name(stack)}"


def _generate() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


def public_key_of(private_pem: str) -> str:
    key = serialization.load_ssh_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def _same_key(a: str, b: str) -> bool:
    """Compare OpenSSH public keys by type and base64 body (ignoring comments)."""
    return a.split()[:2] == b.split()[:2]


def find_key_pair(ec2: Any, stack: str) -> dict[str, Any] | None:
    pairs = unless_missing(lambda: ec2.describe_key_pairs(KeyNames=[key_name(stack)], IncludePublicKey=True)[
        "KeyPairs"], "InvalidKeyPair.NotFound", [])
    return pairs[0] if pairs else None


def _parameter_exists(ssm: Any, name: str) -> bool:
    return bool(unless_missing(lambda: ssm.get_parameter(Name=name) is not None, "ParameterNotFound", False))


def _our_parameters(ctx: Context) -> list[str]:
    """Key parameters tagged for this stack (including stale ones whose key pair is gone)."""
    filters = [
        {"Key": "Name", "Option": "BeginsWith", "Values": [PARAMETER_PREFIX]},
        {"Key": f"tag:{tags.STACK_KEY}", "Values": [ctx.stack]},
        {"Key": f"tag:{tags.PROJECT_KEY}", "Values": [tags.PROJECT_VALUE]},
    ]
    return sorted(
        p["Name"]
        for p in paginate(ctx.clients.ssm, "describe_parameters", "Parameters", ParameterFilters=filters)
    )


def _put(ssm: Any, name: str, value: str, stack: str, description: str) -> None:
    """Create-only put: an existing parameter is never overwritten (ParameterAlreadyExists is fine)."""
    try:
        ssm.put_parameter(
            Name=name,
            Value=value,
            Type="SecureString",
            Description=description,
            Tags=tags.to_aws(tags.resource_tags(stack, "key")),
        )
    except Exception as exc:
        if error_code(exc) != "ParameterAlreadyExists":
            raise


def _host_predates(ctx: Context, pair: dict[str, Any] | None) -> bool:
    """Whether the stack has a host launched before its key pair was made (or with none made yet): a key pair
    deleted and made again while the host ran. Such a host trusts the older key, which only a stale parameter
    still holds."""
    from provision.instance import find_instance

    host = find_instance(ctx)
    if host is None:
        return False
    launched = first_launch(host)
    if pair is None or pair.get("CreateTime") is None or launched is None:
        return True
    return bool(launched <= pair["CreateTime"])


def first_launch(host: dict[str, Any]) -> Any:
    """When the host was first launched: its primary network interface's attach time. (EC2's LaunchTime is
    the last start, which the start function moves every morning.)"""
    for eni in host.get("NetworkInterfaces", []):
        attachment = eni.get("Attachment") or {}
        if attachment.get("DeviceIndex") == 0 and attachment.get("AttachTime") is not None:
            return attachment["AttachTime"]
    return None


class KeyPair(Resource):
    address = "keypair"

    def label(self, ctx: Context) -> str:
        return key_name(ctx.stack)

    def find(self, ctx: Context) -> dict[str, Any] | None:
        pair = find_key_pair(ctx.clients.ec2, ctx.stack)
        params = _our_parameters(ctx)
        pending = pending_parameter_name(ctx.stack)
        if pair is None and not params:
            return None
        final = parameter_name(pair["KeyPairId"]) if pair else None
        stale = [p for p in params if p not in (final, pending)]
        kept = stale if stale and _host_predates(ctx, pair) else []
        return {
            "id": pair["KeyPairId"] if pair else None,
            "public_key": pair.get("PublicKey", "") if pair else "",
            "key_pair": pair is not None,
            "private_key_in_ssm": final is not None
            and (final in params or _parameter_exists(ctx.clients.ssm, final)),
            "pending_parameter": pending in params,
            "stale_parameters": [p for p in stale if p not in kept],
            "kept_parameters": kept,  # not compared (desired has no such key): what note says
        }

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        if live["id"]:
            ctx.ids["key_pair_id"] = live["id"]
            ctx.ids["key_name"] = key_name(ctx.stack)
            ctx.ids["key_parameter"] = parameter_name(live["id"])

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {
            "key_pair": True,
            "private_key_in_ssm": True,
            "pending_parameter": False,
            "stale_parameters": [],
        }

    def note(self, ctx: Context, live: dict[str, Any] | None) -> str:
        kept = (live or {}).get("kept_parameters") or []
        if not kept:
            return ""
        return (f"keeping {', '.join(kept)}: the host was launched before this stack's key pair was made, so it "
                "may trust only that older key; it goes once the host is replaced (`down`, then `up`)")

    def create(self, ctx: Context) -> None:
        self._converge(ctx, None)

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        self._converge(ctx, live)

    def _converge(self, ctx: Context, live: dict[str, Any] | None) -> None:
        ec2, ssm = ctx.clients.ec2, ctx.clients.ssm
        name, pending = key_name(ctx.stack), pending_parameter_name(ctx.stack)
        pair = find_key_pair(ec2, ctx.stack)
        if pair is not None and live is not None and live["private_key_in_ssm"]:
            private = None  # nothing to recover
        else:
            private = self._pending_key(ssm, pending)
            if pair is None:
                if private is None:
                    _put(
                        ssm,
                        pending,
                        _generate(),
                        ctx.stack,
                        f"Private key of {name}, waiting for the key pair import",
                    )
                    private = self._pending_key(ssm, pending)
                    assert private is not None
                imported = ec2.import_key_pair(
                    KeyName=name,
                    PublicKeyMaterial=public_key_of(private).encode(),
                    TagSpecifications=tags.tag_spec("key-pair", tags.resource_tags(ctx.stack, "key")),
                )
                # DescribeKeyPairs is eventually consistent: just after the import it may not list the pair.
                pair = find_key_pair(ec2, ctx.stack) or {
                    "KeyPairId": imported["KeyPairId"], "KeyName": name, "PublicKey": public_key_of(private)}
            final = parameter_name(pair["KeyPairId"])
            if not _parameter_exists(ssm, final):
                if private is None or not _same_key(public_key_of(private), pair.get("PublicKey", "")):
                    raise ProvisionError(
                        f"key pair {name} ({pair['KeyPairId']}) exists but its private key is in neither "
                        f"{final} nor {pending}, so it cannot be recovered. Delete it "
                        f"(aws ec2 delete-key-pair --key-name {name}) and re-run up; a running host keeps "
                        "working, but SSH needs the new key after the host is replaced"
                    )
                _put(
                    ssm,
                    final,
                    private,
                    ctx.stack,
                    f"Private key of EC2 key pair {name} ({pair['KeyPairId']})",
                )
        final = parameter_name(pair["KeyPairId"])
        stale = [p for p in _our_parameters(ctx) if p != final]
        if [p for p in stale if p != pending] and _host_predates(ctx, pair):
            stale = [pending] if pending in stale else []  # the host may trust only an older key: keep it
        for name in stale:
            ssm.delete_parameter(Name=name)

    @staticmethod
    def _pending_key(ssm: Any, name: str) -> str | None:
        value = unless_missing(lambda: ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"],
                               "ParameterNotFound", None)
        return None if value is None else str(value)

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        if live["key_pair"]:
            ctx.clients.ec2.delete_key_pair(KeyName=key_name(ctx.stack))
        for name in _our_parameters(ctx):
            ctx.clients.ssm.delete_parameter(Name=name)


def read_private_key(ctx: Context) -> tuple[str, str]:
    """``(parameter name, private key)`` of the stack's key pair, for the ``key`` command."""
    pair = find_key_pair(ctx.clients.ec2, ctx.stack)
    if pair is None:
        raise ProvisionError(
            f"no key pair {key_name(ctx.stack)} in {ctx.cfg.stack.region}; run `python -m provision up` first"
        )
    name = parameter_name(pair["KeyPairId"])
    try:
        value = ctx.clients.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            raise ProvisionError(
                f"{name} is missing; run `python -m provision up` to repair the key"
            ) from None
        raise
    return name, str(value)


def write_private_key(ctx: Context, target: Path) -> str:
    """Write the stack's private key to ``target``, mode 0400, never over an existing file; return the
    parameter it came from."""
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
    return name
