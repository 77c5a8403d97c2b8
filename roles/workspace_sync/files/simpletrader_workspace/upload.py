"""Trade data to the bucket: what counts as trade data, the upload marker, and whether a release is confirmed.

A release's ``<trade_logs>/`` go to ``<logs>``, its ``<ledger>/`` to
``<ledger>`` (bucket prefixes). Every uploaded file is recorded in the
release's ``.simpletrader-uploaded.json``; a release is *confirmed* when every
trade data file is recorded there with its current size and sha256. Files are
read as root without following any link (``fsutil.Beneath``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from .clock import utc_now
from .config import Config
from .fsutil import Beneath, read_json, sha256_fd, write_json
from .s3 import Bucket

UPLOADED_MARKER = ".simpletrader-uploaded.json"


def scan(cfg: Config, root: Path) -> tuple[list[tuple[str, Path, str]], list[str]]:
    """One walk of the trade data: (path relative to root, absolute path, bucket key) of every file uploaded,
    and the paths (relative to root) of what never is: links, which root does not follow in the trading
    user's directories, and anything that is neither a file nor a directory."""
    files: list[tuple[str, Path, str]] = []
    skipped: list[str] = []
    for local, prefix in ((cfg.trade_logs, cfg.prefixes["logs"]), (cfg.ledger, cfg.prefixes["ledger"])):
        base = root / local
        if base.is_symlink():
            skipped.append(local)
            continue
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(str(base)):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                if path.is_symlink() or not (path.is_dir() or path.is_file()):
                    skipped.append(path.relative_to(root).as_posix())
                elif path.is_file():
                    inner = path.relative_to(base).as_posix()
                    files.append((f"{local}/{inner}", path, prefix + inner))
    return files, skipped


def data_files(cfg: Config, root: Path) -> list[tuple[str, Path, str]]:
    """(path relative to root, absolute path, bucket key) of every trade data file."""
    return scan(cfg, root)[0]


def read_data_file(beneath: Beneath, rel: str) -> tuple[int, int, str]:
    """(descriptor, size, sha256) of a trade data file, opened without following any link."""
    fd = beneath.open_file(rel)
    try:
        size = os.fstat(fd).st_size
        digest = sha256_fd(fd)
        assert digest is not None
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd, size, digest


def recorded(marker: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The files an upload marker lists, by path in the release."""
    return dict((marker or {}).get("files") or {})


def write_marker(path: Path, bucket: str, files: dict[str, Any]) -> None:
    """An upload marker (a release's, or the job logs'): what went to the bucket, by name."""
    write_json(path, {"bucket": bucket, "updated_at": utc_now(), "files": files}, sort_keys=True)


def is_confirmed(cfg: Config, root: Path) -> bool:
    done = recorded(read_json(root / UPLOADED_MARKER))
    beneath = Beneath(root)
    try:
        for rel, _path, _key in data_files(cfg, root):
            entry = done.get(rel)
            try:
                fd, size, digest = read_data_file(beneath, rel)
            except OSError:
                return False
            os.close(fd)
            if not isinstance(entry, dict) or entry.get("size") != size or entry.get("sha256") != digest:
                return False
    finally:
        beneath.close()
    return True


def upload_data(cfg: Config, bucket: Bucket, root: Path, force: Optional[str] = None,
                files: Optional[list[tuple[str, Path, str]]] = None) -> tuple[int, int]:
    """Upload the trade data under ``root`` not yet recorded in its marker.

    Returns (uploaded now, already uploaded). The marker is rewritten after
    every file, so a failure part-way keeps what was confirmed. ``force`` is a
    local top directory (the ledger) whose files are uploaded even when
    recorded. ``files`` is what ``scan`` found, when the caller has walked the
    data already. Raises on the first failed upload.
    """
    done = recorded(read_json(root / UPLOADED_MARKER))
    uploaded = skipped = 0
    beneath = Beneath(root)  # files are read as root in a directory of the trading user: no links followed
    try:
        for rel, _path, key in data_files(cfg, root) if files is None else files:
            fd, size, digest = read_data_file(beneath, rel)
            with os.fdopen(fd, "rb") as fh:
                entry = done.get(rel)
                known = isinstance(entry, dict) and entry.get("sha256") == digest and entry.get("size") == size
                if known and not (force and rel.startswith(force + "/")):
                    skipped += 1
                    continue
                bucket.upload(key, fh, digest)
            done[rel] = {"key": key, "size": size, "sha256": digest, "uploaded_at": utc_now()}
            uploaded += 1
            write_marker(root / UPLOADED_MARKER, cfg.bucket, done)
    finally:
        beneath.close()
    if not (root / UPLOADED_MARKER).exists():
        write_marker(root / UPLOADED_MARKER, cfg.bucket, done)
    return uploaded, skipped
