"""Old code releases in the bucket: ``publish`` keeps the newest ``bucket.keep_releases`` and deletes the rest.

Every full ``publish`` writes a new ``deploy/releases/<release>/`` (code
archive, code index, requirements); without pruning they pile up every
morning. Release ids start with their UTC time (docs/CONTRACTS.md), so they
sort oldest first. The release the manifest names is always kept. The
bucket is versioned: a deleted release becomes noncurrent versions, which the
stack's lifecycle rule expires after ``bucket.noncurrent_version_days``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provision.aws import paginate
from provision.errors import ProvisionError


def _release_keys(s3: Any, bucket: str, deploy: str, owner: str | None) -> dict[str, list[str]]:
    """Each release id under ``<deploy>releases/`` with its object keys, from one listing (objects, not
    common prefixes, which the emulator also reports for a deleted release)."""
    extra = {"ExpectedBucketOwner": owner} if owner else {}
    prefix = f"{deploy}releases/"
    found: dict[str, list[str]] = {}
    for o in paginate(s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix, **extra):
        release, sep, _rest = o["Key"][len(prefix):].partition("/")
        if sep:
            found.setdefault(release, []).append(o["Key"])
    return found


def release_ids(s3: Any, bucket: str, deploy: str, owner: str | None = None) -> list[str]:
    """The release ids under ``<deploy>releases/``, oldest first."""
    return sorted(_release_keys(s3, bucket, deploy, owner))


def prune(s3: Any, bucket: str, deploy: str, keep: int, current: str, log: Callable[[str], None],
          owner: str | None = None) -> list[str]:
    """Delete every release but the newest ``keep`` (``current`` always stays); returns the ids deleted."""
    extra = {"ExpectedBucketOwner": owner} if owner else {}
    releases = _release_keys(s3, bucket, deploy, owner)
    ids = sorted(releases)
    kept = set(ids[-keep:]) | {current}
    gone = [r for r in ids if r not in kept]
    for release in gone:
        keys = [{"Key": k} for k in releases[release]]
        for i in range(0, len(keys), 1000):
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True}, **extra)
            if result.get("Errors"):
                first = result["Errors"][0]
                raise ProvisionError(f"publish: could not remove old release {release}: {first.get('Key')}: "
                                     f"{first.get('Code')} {first.get('Message', '')}; the new release is published")
    if gone:
        log(f"publish: removed {len(gone)} old release(s) ({', '.join(gone)}); keeping {keep}")
    return gone
