"""The release's manifest (``<deploy>manifest.json``, version 1): read, checked, grouped by role."""

from __future__ import annotations

import json
from typing import Any

from .config import Config
from .errors import Failure
from .fsutil import is_sha256
from .s3 import NOT_FOUND, Bucket, aws_errors, describe, error_code

MANIFEST_VERSION = 1
# Roles of which a manifest lists exactly one object; besides them, any number of wheels.
ROLES_ONE = ("code", "requirements", "keys", "token")
RELEASE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."


def read_manifest(cfg: Config, bucket: Bucket) -> dict[str, Any]:
    """The manifest, every field the sync relies on checked; a Failure says what is wrong."""
    key = cfg.prefixes["deploy"] + "manifest.json"
    try:
        body = bucket.read(key)
    except aws_errors() as exc:
        if error_code(exc) in NOT_FOUND:
            raise Failure(f"no manifest at s3://{cfg.bucket}/{key}; run `provision publish` first") from None
        if error_code(exc) == "NoSuchBucket":
            raise Failure(f"bucket {cfg.bucket} does not exist") from None
        raise Failure(f"cannot read s3://{cfg.bucket}/{key}: {describe(exc)}") from None
    try:
        manifest = json.loads(body.decode("utf-8"))
    except ValueError:
        raise Failure(f"manifest s3://{cfg.bucket}/{key} is not valid JSON") from None
    return check_manifest(manifest)


def check_manifest(manifest: Any) -> dict[str, Any]:
    """The manifest, once every field the sync relies on is checked."""
    if not isinstance(manifest, dict):
        raise Failure("manifest is not a JSON object")
    if manifest.get("version") != MANIFEST_VERSION:
        raise Failure(
            f"manifest version {manifest.get('version')!r} is not supported (this routine reads "
            f"version {MANIFEST_VERSION}); update the host routine"
        )
    release = manifest.get("release")
    if not isinstance(release, str) or not release or release.startswith(".") or release.strip(RELEASE_CHARS):
        raise Failure(f"manifest has an invalid release id {release!r}")
    objects = manifest.get("objects")
    if not isinstance(objects, list):
        raise Failure("manifest has no object list")
    counts: dict[str, int] = {}
    for obj in objects:
        role = check_object(obj)
        counts[role] = counts.get(role, 0) + 1
    for role in ROLES_ONE:
        if counts.get(role) != 1:
            raise Failure(f"manifest must list exactly one {role!r} object (found {counts.get(role, 0)})")
    return manifest


def check_object(obj: Any) -> str:
    """Check one entry of the object list; returns its role."""
    if not isinstance(obj, dict):
        raise Failure("manifest object entries must be objects")
    role, key, size = obj.get("role"), obj.get("key"), obj.get("size")
    if role not in ROLES_ONE + ("wheel",):
        raise Failure(f"manifest object with unknown role {role!r}")
    if not isinstance(key, str) or not key or key.endswith("/"):
        raise Failure(f"manifest object with an invalid key {key!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise Failure(f"manifest object {key} has an invalid size")
    if not is_sha256(obj.get("sha256")):
        raise Failure(f"manifest object {key} has an invalid sha256")
    if role == "wheel":
        name = key.rsplit("/", 1)[-1]
        if not name.endswith(".whl") or name.startswith("."):
            raise Failure(f"manifest wheel {key} is not a .whl file")
    return str(role)


def by_role(manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The manifest's objects grouped by role (``code``, ``requirements``, ``keys``, ``token``, ``wheel``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for obj in manifest["objects"]:
        groups.setdefault(obj["role"], []).append(obj)
    return groups
