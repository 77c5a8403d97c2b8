"""Operator side of the workspace contract: publish a release to the bucket.

``publish`` packs the code base into a deterministic ``code.tar.gz``, uploads
it with requirements.txt, the host's wheelhouse (only wheels missing or
changed in the bucket), keys.json and access_token.txt, and writes
``<deploy>manifest.json`` LAST: the manifest is the commit point the host's
``simpletrader-workspace sync`` reads. ``publish_token`` replaces only the
access token and rewrites the manifest with its new size and hash;
``publish_stack`` runs either for a stack's config (``provision publish``).
The code archive is ``codearchive.py``'s, the wheels ``wheelhouse.py``'s,
the input checks ``artifacts.py``'s.

The manifest format (version 1) and bucket layout are in docs/CONTRACTS.md.
Inputs are validated before any AWS call; the content of keys.json and of the
token is never logged (only key names and sizes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision import releases
from provision.artifacts import validate, validate_token
from provision.codearchive import CODE_INDEX_NAME, build_code_release, code_index
from provision.errors import PublishError
from provision.wheelhouse import DEFAULT_PLATFORMS, build_wheelhouse, host_platforms

if TYPE_CHECKING:
    from provision.engine import Context

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
Log = Callable[[str], None]


# --------------------------------------------------------------------------- helpers


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _prefix(prefixes: dict[str, str], name: str) -> str:
    value = prefixes.get(name, name + "/")
    if not isinstance(value, str) or not value.strip("/"):
        raise PublishError(f"bucket.prefixes.{name} must be a non-empty string (e.g. '{name}/')")
    return value.strip("/") + "/"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- S3


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class _OwnerBound:
    """An S3 client whose object calls carry ``ExpectedBucketOwner`` when an owner is given."""

    def __init__(self, s3: Any, owner: str | None) -> None:
        self._s3 = s3
        self._extra = {"ExpectedBucketOwner": owner} if owner else {}

    def put_object(self, **kwargs: Any) -> Any:
        return self._s3.put_object(**kwargs, **self._extra)

    def head_object(self, **kwargs: Any) -> Any:
        return self._s3.head_object(**kwargs, **self._extra)

    def get_object(self, **kwargs: Any) -> Any:
        return self._s3.get_object(**kwargs, **self._extra)


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return dict(s3.head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _put(s3: Any, bucket: str, key: str, body: bytes, digest: str, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, Metadata={"sha256": digest})


def _entry(role: str, key: str, data: bytes) -> dict[str, Any]:
    return {"role": role, "key": key, "size": len(data), "sha256": _sha256(data)}


def _write_manifest(s3: Any, bucket: str, deploy: str, manifest: dict[str, Any]) -> None:
    body = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    s3.put_object(
        Bucket=bucket,
        Key=deploy + MANIFEST_NAME,
        Body=body,
        ContentType="application/json",
        CacheControl="no-cache",
        Metadata={"sha256": _sha256(body)},
    )


def publish(
    s3: Any,
    *,
    bucket: str,
    prefixes: dict[str, str],
    code_dir: Path,
    requirements: Path,
    keys_file: Path,
    token_file: Path,
    wheelhouse: Path | None,
    log: Log = print,
    python_version: str = "3.9",
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    expected_owner: str | None = None,
    token_required: bool = True,
) -> dict[str, Any]:
    """Publish a release; returns the manifest written (last) to ``<deploy>manifest.json``.

    ``wheelhouse`` is a directory of wheels built for the host. When it is
    None and requirements.txt lists packages, one is built here first with
    ``build_wheelhouse(requirements, <temp dir>, python_version, platforms)``
    (still before any AWS call). ``expected_owner`` (the account id) is sent
    as ``ExpectedBucketOwner`` with every call, so secrets never land in a
    bucket of the same name that another account owns.

    ``token_required=False`` (``host.token_check: off``): a missing or empty
    ``token_file`` is no error; the manifest's one token entry (the host's
    sync needs it) is then an empty ``access_token.txt`` without
    ``published_at``. A token in the file is published as usual.
    """
    s3 = _OwnerBound(s3, expected_owner)
    code_dir, requirements = Path(code_dir), Path(requirements)
    keys_file, token_file = Path(keys_file), Path(token_file)
    deploy, secrets = _prefix(prefixes, "deploy"), _prefix(prefixes, "secrets")
    key_names, reqs, wheels, has_token = validate(
        code_dir, requirements, keys_file, token_file, Path(wheelhouse) if wheelhouse is not None else None,
        token_required,
    )
    token = token_file if has_token else None
    if wheelhouse is None and reqs:
        with tempfile.TemporaryDirectory(prefix="simpletrader-wheelhouse-") as tmp:
            built = build_wheelhouse(requirements, Path(tmp), python_version, platforms, log=log)
            return _upload_release(
                s3,
                bucket,
                deploy,
                secrets,
                code_dir,
                requirements,
                keys_file,
                token,
                key_names,
                built,
                log,
            )
    return _upload_release(
        s3, bucket, deploy, secrets, code_dir, requirements, keys_file, token, key_names, wheels, log
    )


def _upload_release(
    s3: Any,
    bucket: str,
    deploy: str,
    secrets: str,
    code_dir: Path,
    requirements: Path,
    keys_file: Path,
    token_file: Path | None,
    key_names: list[str],
    wheels: list[Path],
    log: Log,
) -> dict[str, Any]:

    archive, index_entries = build_code_release(code_dir)
    req_data = requirements.read_bytes()
    wheel_digests = [(w, _sha256_file(w), w.stat().st_size) for w in wheels]
    content = hashlib.sha256()
    content.update(_sha256(archive).encode())
    content.update(_sha256(req_data).encode())
    for wheel, digest, _size in wheel_digests:
        content.update(f"{wheel.name}={digest}".encode())
    created = _utc_now()
    release = f"{created.strftime('%Y%m%dT%H%M%SZ')}-{content.hexdigest()[:8]}"
    log(f"publish: release {release} to s3://{bucket}/{deploy}")

    objects: list[dict[str, Any]] = []
    code_key = f"{deploy}releases/{release}/code.tar.gz"
    _put(s3, bucket, code_key, archive, _sha256(archive), "application/gzip")
    objects.append(_entry("code", code_key, archive))
    log(f"publish: code archive {len(archive)} bytes -> {code_key}")
    index_key = f"{deploy}releases/{release}/{CODE_INDEX_NAME}"
    index_data = code_index(code_key, archive, index_entries)
    _put(s3, bucket, index_key, index_data, _sha256(index_data), "application/json")
    index_ref = {"key": index_key, "size": len(index_data), "sha256": _sha256(index_data)}
    log(f"publish: code index ({len(index_entries)} entries) -> {index_key}")
    req_key = f"{deploy}releases/{release}/requirements.txt"
    _put(s3, bucket, req_key, req_data, _sha256(req_data), "text/plain")
    objects.append(_entry("requirements", req_key, req_data))

    uploaded = 0
    for wheel, digest, size in wheel_digests:
        key = f"{deploy}wheelhouse/{wheel.name}"
        head = _head(s3, bucket, key)
        same = head and head.get("ContentLength") == size and head.get("Metadata", {}).get("sha256") == digest
        if not same:
            _put(s3, bucket, key, wheel.read_bytes(), digest, "application/zip")
            uploaded += 1
        objects.append({"role": "wheel", "key": key, "size": size, "sha256": digest})
    log(
        f"publish: wheelhouse {len(wheels)} wheel(s), {uploaded} uploaded, "
        f"{len(wheels) - uploaded} already there"
    )

    keys_data = keys_file.read_bytes()
    keys_key = secrets + "keys.json"
    _put(s3, bucket, keys_key, keys_data, _sha256(keys_data), "application/json")
    objects.append(_entry("keys", keys_key, keys_data))
    log(f"publish: keys.json (keys: {', '.join(key_names)}) -> {keys_key}")
    token_key = secrets + "access_token.txt"
    if token_file is None:
        _put(s3, bucket, token_key, b"", _sha256(b""), "text/plain")
        objects.append(_entry("token", token_key, b""))
        log(f"publish: no access token (host.token_check: off, and no token file): {token_key} is empty")
    else:
        token_data = token_file.read_bytes()
        _put(s3, bucket, token_key, token_data, _sha256(token_data), "text/plain")
        objects.append(_entry("token", token_key, token_data) | {"published_at": _stamp(_utc_now())})
        log(f"publish: access token ({len(token_data)} bytes) -> {token_key}")

    manifest = {
        "version": MANIFEST_VERSION,
        "release": release,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "objects": objects,
        "code_index": index_ref,
    }
    _write_manifest(s3, bucket, deploy, manifest)
    log(f"publish: manifest written: {deploy}{MANIFEST_NAME} (release {release}, {len(objects)} objects)")
    return manifest


def publish_token(
    s3: Any,
    *,
    bucket: str,
    prefixes: dict[str, str],
    token_file: Path,
    log: Log = print,
    expected_owner: str | None = None,
) -> dict[str, Any]:
    """Upload a new access token and rewrite the manifest's token entry (everything else stays).

    ``expected_owner``: as for ``publish``.
    """
    s3 = _OwnerBound(s3, expected_owner)
    token_file = Path(token_file)
    deploy, secrets = _prefix(prefixes, "deploy"), _prefix(prefixes, "secrets")
    validate_token(token_file)
    from botocore.exceptions import ClientError

    manifest_key = deploy + MANIFEST_NAME
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    except ClientError as exc:
        if _error_code(exc) in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            raise PublishError(
                f"no manifest at s3://{bucket}/{manifest_key}; run a full `publish` first"
            ) from None
        raise
    try:
        manifest = json.loads(body)
    except ValueError:
        raise PublishError(f"s3://{bucket}/{manifest_key} is not valid JSON; run a full `publish`") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise PublishError(
            f"s3://{bucket}/{manifest_key} has version "
            f"{manifest.get('version') if isinstance(manifest, dict) else None!r}"
            f" (this tool writes {MANIFEST_VERSION}); run a full `publish`"
        )
    tokens = [o for o in manifest.get("objects", []) if isinstance(o, dict) and o.get("role") == "token"]
    if len(tokens) != 1:
        raise PublishError(
            f"s3://{bucket}/{manifest_key} lists {len(tokens)} token objects; run a full `publish`"
        )
    token_data = token_file.read_bytes()
    token_key = tokens[0].get("key") or secrets + "access_token.txt"
    _put(s3, bucket, token_key, token_data, _sha256(token_data), "text/plain")
    tokens[0].update(_entry("token", token_key, token_data), published_at=_stamp(_utc_now()))
    log(f"publish: access token ({len(token_data)} bytes) -> {token_key}")
    _write_manifest(s3, bucket, deploy, manifest)
    log(f"publish: manifest updated: {manifest_key} (release {manifest.get('release')}, token only)")
    return manifest


def publish_stack(ctx: Context, *, token: Path | None, wheelhouse: Path | None, log: Log) -> dict[str, Any]:
    """``provision publish``: the whole release (then prune old releases), or with ``token`` the token only,
    into the stack's bucket; returns the manifest written."""
    from provision.config import bucket_name

    cfg = ctx.cfg
    bucket = bucket_name(cfg)
    prefixes = cfg.bucket.prefixes.as_dict()
    s3 = ctx.clients.s3
    owner = ctx.clients.account_id  # every S3 call names the bucket's expected owner
    if token is not None:
        return publish_token(s3, bucket=bucket, prefixes=prefixes, token_file=token, log=log, expected_owner=owner)
    a = cfg.artifacts
    code_dir = cfg.artifact_path(a.code_dir)
    script = cfg.eod.closure_script
    if script and not (code_dir / script).is_file():
        log(f"warning: eod.closure_script {script} is not in {code_dir}; the end of day will skip it and the "
            "stop notification will say so. Add the script, or set eod.closure_script to the right path "
            '(or "" for none)')
    manifest = publish(
        s3,
        bucket=bucket,
        prefixes=prefixes,
        code_dir=code_dir,
        requirements=cfg.artifact_path(a.requirements),
        keys_file=cfg.artifact_path(a.keys_file),
        token_file=cfg.artifact_path(a.token_file),
        wheelhouse=wheelhouse,
        platforms=host_platforms(cfg.instance.architecture),
        log=log,
        expected_owner=owner,
        token_required=cfg.host.token_check != "off",  # noqa: S105 - a mode, not a secret
    )
    releases.prune(s3, bucket, prefixes["deploy"], cfg.bucket.keep_releases, str(manifest["release"]), log, owner)
    return manifest
