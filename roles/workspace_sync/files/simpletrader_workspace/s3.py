"""The bucket: the only module that talks to S3 (botocore; boto3's own layer is not needed).

``client`` makes the one client; ``Bucket`` does every request the routine
makes: verified downloads, small verified reads, ranged GETs of the code
archive, uploads and listings. botocore errors go through unchanged, except
where a download's failure has a message of its own; ``aws_errors``,
``error_code`` and ``describe`` let callers tell them apart and say them in
one line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Optional

from .clock import iso_utc
from .config import Config
from .errors import Failure
from .fsutil import CHUNK

# Parallel ranged downloads of changed code files (and the S3 connection pool).
FETCH_WORKERS = 8
# Test hook only: seconds to sleep after each downloaded object (lets a test
# kill the routine mid-download). Unset in production.
_TEST_SLEEP_ENV = "SIMPLETRADER_TEST_SLEEP_AFTER_OBJECT"
NOT_FOUND = ("NoSuchKey", "404", "NotFound")


def client(cfg: Config) -> Any:
    """A botocore S3 client (boto3's own layer is not needed, and not importing it saves start-up time)."""
    try:
        import botocore.session
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise Failure(f"botocore is not installed in this interpreter ({sys.executable})") from None
    return botocore.session.get_session().create_client(
        "s3",
        region_name=cfg.region,
        endpoint_url=cfg.endpoint_url,
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=60,
            max_pool_connections=FETCH_WORKERS,
        ),
    )


def aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def describe(exc: BaseException) -> str:
    code = error_code(exc)
    return (f"{code}: {exc}") if code else str(exc) or type(exc).__name__


class Bucket:
    """The configured bucket, through one client."""

    def __init__(self, s3: Any, name: str) -> None:
        self.s3 = s3
        self.name = name

    def read(self, key: str, limit: Optional[int] = None) -> bytes:
        """An object's content (at most ``limit`` bytes); botocore errors go through."""
        body = self.s3.get_object(Bucket=self.name, Key=key)["Body"]
        return bytes(body.read() if limit is None else body.read(limit))

    def read_verified(self, key: str, size: int, sha256: str, what: str) -> bytes:
        """A small object read into memory, verified against its size and sha256."""
        try:
            data = self.read(key, size + 1)
        except aws_errors() as exc:
            if error_code(exc) in NOT_FOUND:
                raise Failure(f"{what} {key} listed in the manifest is missing from bucket {self.name}; "
                              "publish again") from None
            raise Failure(f"cannot download {key}: {describe(exc)}") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise Failure(f"{what} {key} does not match the manifest (size or sha256); refusing this release")
        return data

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object, all of them or a Failure."""
        try:
            data = self.s3.get_object(Bucket=self.name, Key=key, Range=f"bytes={start}-{end - 1}")["Body"].read()
        except aws_errors() as exc:
            raise Failure(f"cannot download part of {key}: {describe(exc)}") from None
        if len(data) != end - start:
            raise Failure(f"ranged download of {key} returned {len(data)} bytes, not {end - start}")
        return bytes(data)

    def download(self, obj: dict[str, Any], dest: Path, mode: int = 0o644) -> Optional[str]:
        """Stream a manifest object to ``dest`` (created with ``mode``), verifying size and sha256.

        Returns the object's LastModified (ISO, UTC) when known.
        """
        key = obj["key"]
        try:
            response = self.s3.get_object(Bucket=self.name, Key=key)
        except aws_errors() as exc:
            if error_code(exc) in NOT_FOUND:
                raise Failure(
                    f"object {key} listed in the manifest is missing from bucket {self.name}; publish again"
                ) from None
            raise Failure(f"cannot download {key}: {describe(exc)}") from None
        size, digest = self._stream(response["Body"], key, dest, mode, obj["size"])
        if size != obj["size"]:
            got = f"more than {obj['size']}" if size > obj["size"] else str(size)
            raise Failure(
                f"size mismatch for {key}: manifest says {obj['size']} bytes, bucket has {got}; "
                "refusing this release"
            )
        if digest != obj["sha256"]:
            raise Failure(
                f"sha256 mismatch for {key} (manifest {obj['sha256'][:12]}..., downloaded "
                f"{digest[:12]}...); refusing this release"
            )
        sleep = os.environ.get(_TEST_SLEEP_ENV)
        if sleep:
            time.sleep(float(sleep))
        modified = response.get("LastModified")
        return iso_utc(modified) if modified else None

    @staticmethod
    def _stream(body: Any, key: str, dest: Path, mode: int, limit: int) -> tuple[int, str]:
        """Write a response body to ``dest`` up to the first block beyond ``limit``: (bytes read, sha256)."""
        digest = hashlib.sha256()
        size = 0
        fd = os.open(str(dest), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            try:
                for block in iter(lambda: body.read(CHUNK), b""):
                    digest.update(block)
                    size += len(block)
                    if size > limit:
                        break
                    fh.write(block)
            except aws_errors() as exc:
                raise Failure(f"download of {key} was interrupted: {describe(exc)}") from None
        return size, digest.hexdigest()

    def download_to(self, key: str, path: Path) -> None:
        """Copy an object to a new or truncated file, whole: a copy shorter than the object's length (a
        connection that dropped part-way) raises Failure. There is no sha256 to check it against."""
        response = self.s3.get_object(Bucket=self.name, Key=key)
        with open(path, "wb") as fh:
            try:
                shutil.copyfileobj(response["Body"], fh, CHUNK)
            except aws_errors() as exc:
                raise Failure(f"download of {key} was interrupted: {describe(exc)}") from None
            size = fh.tell()
        expected = response.get("ContentLength")
        if expected is not None and size != int(expected):
            raise Failure(f"download of {key} ended after {size} of {expected} bytes")

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def upload(self, key: str, fh: BinaryIO, sha256: str) -> None:
        """Put an open file's content at ``key``, its sha256 in the object's metadata."""
        self.s3.put_object(Bucket=self.name, Key=key, Body=fh, Metadata={"sha256": sha256})
