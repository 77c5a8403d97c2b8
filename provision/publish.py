"""Operator side of the workspace contract: publish a release to the bucket.

``publish`` packs the code base into a deterministic ``code.tar.gz``, uploads
it with requirements.txt, the host's wheelhouse (only wheels missing or
changed in the bucket), keys.json and access_token.txt, and writes
``<deploy>manifest.json`` LAST: the manifest is the commit point the host's
``simpletrader-workspace sync`` reads. ``publish_token`` replaces only the
access token and rewrites the manifest with its new size and hash.

The manifest format (version 1) and bucket layout are in docs/CONTRACTS.md.
Inputs are validated before any AWS call; the content of keys.json and of the
token is never logged (only key names and sizes).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from provision.errors import ProvisionError

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
CODE_INDEX_NAME = "code-index.json"
CODE_INDEX_VERSION = 1
# Never packed into the code archive: caches, VCS data, the host's trade data
# (it lives in the workspace and is uploaded by the end-of-day routine), and
# secrets that sit in a developer's working copy (they go to secrets/).
EXCLUDE_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "trade_logs",
        "ledger",
    }
)
EXCLUDE_TOP_FILES = frozenset({".simpletrader-release.json", ".simpletrader-uploaded.json"})
# Secrets are never packed into the code archive, at any depth: they go to
# secrets/ and land on the host mode 0600, while the code is world-readable.
EXCLUDE_SECRET_FILES = frozenset({"keys.json", "access_token.txt", ".env"})
EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".pem")
DEFAULT_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
ARM64_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
FIXED_MTIME = 0
Log = Callable[[str], None]


class PublishError(ProvisionError, ValueError):
    """Bad input or a bucket state that publishing cannot work with; the message says what to do."""


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


# --------------------------------------------------------------------------- validation


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_file(path: Path, what: str, fix: str) -> None:
    if not path.exists():
        raise PublishError(f"{what} {path} does not exist; {fix}")
    if not path.is_file():
        raise PublishError(f"{what} {path} is not a file; {fix}")
    if not os.access(path, os.R_OK):
        raise PublishError(f"{what} {path} is not readable; check its permissions")


def _validate_keys(keys_file: Path) -> list[str]:
    _check_file(keys_file, "keys file", "point artifacts.keys_file at your keys.json")
    try:
        data = json.loads(keys_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        # The parser's message can quote the content: do not repeat it.
        raise PublishError(
            f"keys file {keys_file} is not valid JSON; fix its syntax "
            "(e.g. with `python -m json.tool` locally)"
        ) from None
    if not isinstance(data, dict) or not data:
        raise PublishError(f"keys file {keys_file} must hold a non-empty JSON object of key names to values")
    return sorted(str(k) for k in data)


def _validate_token(token_file: Path, required: bool = True) -> bool:
    """Check the token file; False when there is none and none is ``required`` (``host.token_check: off``:
    a program that logs in to the broker itself). A token given anyway is checked and published."""
    if not required:
        if not token_file.exists():
            return False
        if token_file.is_file() and os.access(token_file, os.R_OK) and not token_file.read_bytes().strip():
            return False
    _check_file(token_file, "token file", "point artifacts.token_file (or --token) at access_token.txt")
    try:
        text = token_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PublishError(f"token file {token_file} is not UTF-8 text") from None
    if not text.strip():
        raise PublishError(f"token file {token_file} is empty; write today's Zerodha access token into it")
    return True


def _requirement_lines(requirements: Path) -> list[str]:
    lines = []
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _validate(
    code_dir: Path, requirements: Path, keys_file: Path, token_file: Path, wheelhouse: Path | None,
    token_required: bool = True,
) -> tuple[list[str], list[str], list[Path], bool]:
    if not code_dir.is_dir():
        raise PublishError(
            f"code directory {code_dir} does not exist or is not a directory; "
            "point artifacts.code_dir at your trading code base"
        )
    _check_file(requirements, "requirements file", "point artifacts.requirements at requirements.txt")
    reqs = _requirement_lines(requirements)
    key_names = _validate_keys(keys_file)
    has_token = _validate_token(token_file, token_required)
    wheels: list[Path] = []
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise PublishError(
                f"wheelhouse {wheelhouse} is not a directory; build it with build_wheelhouse()"
            )
        wheels = sorted(p for p in wheelhouse.iterdir() if p.is_file() and p.name.endswith(".whl"))
        if reqs and not wheels:
            raise PublishError(
                f"wheelhouse {wheelhouse} has no .whl files but {requirements} lists packages; the host "
                "installs with --no-index: build it with build_wheelhouse() or omit it to build one here"
            )
    return key_names, reqs, wheels, has_token


# --------------------------------------------------------------------------- archive


def _iter_code_files(code_dir: Path) -> Iterable[tuple[str, Path]]:
    """(archive name, path) for everything packed, sorted, directories first within each level."""
    root = code_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDE_DIRS)
        top = here == root
        for name in sorted(filenames + [d for d in dirnames if (here / d).is_symlink()]):
            if name.endswith(EXCLUDE_SUFFIXES) or name in EXCLUDE_SECRET_FILES or (top and name in EXCLUDE_TOP_FILES):
                continue
            path = here / name
            yield path.relative_to(root).as_posix(), path
        for name in dirnames:
            if not (here / name).is_symlink():
                yield (here / name).relative_to(root).as_posix() + "/", here / name


def build_code_archive(code_dir: Path) -> bytes:
    """A deterministic gzip tar of the code base: same tree, same bytes (see ``build_code_release``)."""
    return build_code_release(code_dir)[0]


def build_code_release(code_dir: Path) -> tuple[bytes, list[dict[str, Any]]]:
    """The code archive and its index: ``(code.tar.gz bytes, entries)``.

    Entries are sorted, owners are 0/0 with no names, mtimes fixed, modes
    normalised to 0644 (0755 when any execute bit is set, and for
    directories). Symlinks are kept when they point inside the tree;
    others, and special files, are refused.

    Every tar entry (header, data, padding) is compressed as a gzip member of
    its own, and the members are concatenated: the whole is an ordinary
    ``.tar.gz`` any tar reader extracts, and one file's member can also be
    fetched alone with a ranged GET and decompressed by itself. The index
    lists every entry in archive order: ``{"path", "type": "dir"|"file"|
    "symlink", "mode"}``, plus ``size``, ``sha256``, ``offset`` and
    ``length`` (of its gzip member in the archive) for files and ``target``
    for symlinks (docs/CONTRACTS.md, code index).
    """
    root = code_dir.resolve()
    entries = sorted(_iter_code_files(code_dir), key=lambda e: e[0])
    raw = io.BytesIO()
    spans: list[tuple[int, int]] = []
    index: list[dict[str, Any]] = []
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = FIXED_MTIME
            begin = raw.tell()
            if path.is_symlink():
                target = os.readlink(path)
                resolved = (path.parent / target).resolve()
                if os.path.isabs(target) or not resolved.is_relative_to(root):
                    raise PublishError(
                        f"{path} is a symlink to {target}, outside the code directory; "
                        "replace it with a copy or a relative link inside the tree"
                    )
                info.type = tarfile.SYMTYPE
                info.linkname = target
                info.mode = 0o777
                tar.addfile(info)
                entry: dict[str, Any] = {"path": info.name, "type": "symlink", "mode": 0o777, "target": target}
            elif name.endswith("/"):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                entry = {"path": info.name, "type": "dir", "mode": 0o755}
            elif path.is_file():
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                tar.addfile(info, io.BytesIO(data))
                entry = {"path": info.name, "type": "file", "mode": info.mode, "size": len(data),
                         "sha256": _sha256(data)}
            else:
                raise PublishError(
                    f"{path} is not a regular file, directory or symlink; remove it from the code directory"
                )
            spans.append((begin, raw.tell()))
            index.append(entry)
    tar_bytes = raw.getvalue()
    tail = spans[-1][1] if spans else 0
    out = io.BytesIO()
    for entry, (begin, finish) in zip(index, spans):
        member = gzip.compress(tar_bytes[begin:finish], compresslevel=9, mtime=FIXED_MTIME)
        if entry["type"] == "file":
            entry.update(offset=out.tell(), length=len(member))
        out.write(member)
    out.write(gzip.compress(tar_bytes[tail:], compresslevel=9, mtime=FIXED_MTIME))  # end-of-archive blocks
    return out.getvalue(), index


# --------------------------------------------------------------------------- wheelhouse


def host_platforms(architecture: str) -> tuple[str, ...]:
    """The wheel platform tags for the host's ``instance.architecture`` (x86_64 or arm64)."""
    table = {"x86_64": DEFAULT_PLATFORMS, "arm64": ARM64_PLATFORMS, "aarch64": ARM64_PLATFORMS}
    try:
        return table[architecture]
    except KeyError:
        raise PublishError(f"instance.architecture {architecture!r} is not x86_64 or arm64") from None


def build_wheelhouse(
    requirements: Path,
    dest: Path,
    python_version: str = "3.9",
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    log: Log = print,
) -> list[Path]:
    """Download wheels of ``requirements`` for the host into ``dest``.

    Runs ``pip download --only-binary=:all: --python-version <v> --platform ...``
    with this interpreter's pip (and its configured indexes). Returns the
    wheel files in ``dest``, sorted. Raises PublishError when pip fails.
    """
    _check_file(requirements, "requirements file", "point artifacts.requirements at requirements.txt")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        str(dest),
        "-r",
        str(requirements),
    ]
    for platform in platforms:
        cmd += ["--platform", platform]
    log(f"wheelhouse: pip download for Python {python_version} ({', '.join(platforms)}) into {dest}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-5:]
        raise PublishError(
            f"pip download failed for {requirements} (exit {proc.returncode}): "
            + " | ".join(tail)[-800:]
            + "; pin versions that publish wheels for Python "
            + python_version
        )
    wheels = sorted(p for p in dest.iterdir() if p.is_file() and p.name.endswith(".whl"))
    log(f"wheelhouse: {len(wheels)} wheel(s)")
    return wheels


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


def _code_index(code_key: str, archive: bytes, entries: list[dict[str, Any]]) -> bytes:
    """The code index object (docs/CONTRACTS.md): the entries, bound to the archive they point into."""
    doc = {
        "version": CODE_INDEX_VERSION,
        "archive": {"key": code_key, "size": len(archive), "sha256": _sha256(archive)},
        "entries": entries,
    }
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode("utf-8")


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
    key_names, reqs, wheels, has_token = _validate(
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
    index_data = _code_index(code_key, archive, index_entries)
    _put(s3, bucket, index_key, index_data, _sha256(index_data), "application/json")
    code_index = {"key": index_key, "size": len(index_data), "sha256": _sha256(index_data)}
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
        "code_index": code_index,
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
    _validate_token(token_file)
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
