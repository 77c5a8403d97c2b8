"""The ledger carries over: a new release starts with the previous workspace's, or the bucket's on a new host.
So do today's trade logs, when a sync runs during the trading day (``publish --sync`` after a token refresh):
the jobs that start after it go on appending to the morning's files, and the end of day uploads the whole day.

Only regular files and directories are copied, never through a symlink (the
trading user owns the previous workspace; this runs as root). Files known to
be in the bucket already are recorded in the new release's upload marker, so
they are not uploaded again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Optional

from .config import Config
from .errors import Failure
from .fsutil import Beneath, copy_fd, read_json, sha256_file
from .output import say
from .s3 import Bucket, aws_errors, describe
from .upload import UPLOADED_MARKER, data_files, recorded, write_marker


def copy_plain_files(src_root: Path, rel_dir: str, dest_root: Path) -> None:
    """Copy the regular files and directories under ``src_root/rel_dir`` to ``dest_root/rel_dir``.

    The source belongs to the trading user and this runs as root: symlinks are
    skipped (and said so), and every file is opened without following a link,
    so nothing from outside the workspace can be copied in.
    """
    beneath = Beneath(src_root)
    try:
        for dirpath, dirnames, filenames in os.walk(str(src_root / rel_dir)):
            rel = os.path.relpath(dirpath, str(src_root))
            os.makedirs(str(dest_root / rel), exist_ok=True)
            for name in sorted(dirnames + filenames):
                if os.path.islink(os.path.join(dirpath, name)):
                    say("sync", f"not carrying over {rel}/{name}: it is a symbolic link")
            for name in filenames:
                path = f"{rel}/{name}"
                try:
                    fd = beneath.open_file(path)
                except OSError:
                    continue  # a link (reported above) or something that is not a regular file
                try:
                    st = os.fstat(fd)
                    target = str(dest_root / path)
                    copy_fd(fd, target, 0o644)
                    os.chmod(target, stat.S_IMODE(st.st_mode) & 0o775)
                    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(fd)
    finally:
        beneath.close()


def carry_today(cfg: Config, previous: Optional[Path], dest: Path) -> None:
    """Today's trade logs from the previous workspace into the new release (a sync during the trading day)."""
    if previous is None:
        return
    rel = f"{cfg.trade_logs}/{cfg.today()}"
    base, day = previous / cfg.trade_logs, previous / rel
    if base.is_symlink() or day.is_symlink() or not day.is_dir():
        return  # none today (the usual morning sync), or a link: not followed, as root
    copy_plain_files(previous, rel, dest)
    say("sync", f"carried over today's trade logs ({rel}/) from {previous.name}")


def download_ledger(cfg: Config, bucket: Bucket, target: Path, known: dict[str, Any]) -> None:
    """The bucket's ledger into ``target``; each file downloaded gets its upload marker entry in ``known``.

    Entries stay for what was downloaded before a failure.
    """
    prefix = cfg.prefixes["ledger"]
    for key in bucket.keys(prefix):
        rel = key[len(prefix) :]
        parts = [p for p in rel.split("/") if p]
        if not parts or ".." in parts or rel.endswith("/"):
            continue
        path = target.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        bucket.download_to(key, path)
        known["/".join([cfg.ledger] + parts)] = {
            "key": key,
            "size": path.stat().st_size,
            "sha256": sha256_file(path),
            "uploaded_at": "downloaded from the bucket",
        }


def seed_ledger(cfg: Config, bucket: Bucket, previous: Optional[Path], dest: Path) -> None:
    """The ledger carries over from the previous workspace, or from the bucket on a new host.

    Files whose content is known to be in the bucket already (confirmed in the
    previous release's marker, or just downloaded) are recorded in the new
    release's upload marker, so they are not uploaded again.
    """
    target = dest / cfg.ledger
    if target.exists():
        return
    known: dict[str, Any] = {}
    if previous is not None and (previous / cfg.ledger).is_dir() and not (previous / cfg.ledger).is_symlink():
        copy_plain_files(previous, cfg.ledger, dest)
        known = recorded(read_json(previous / UPLOADED_MARKER))
    else:
        try:
            download_ledger(cfg, bucket, target, known)
        except aws_errors() + (Failure,) as exc:
            # Not a warning: the jobs would append to a missing or cut ledger, and the end of day would
            # upload it over the bucket's. The sync fails; the new release is discarded.
            raise Failure(f"could not fetch the ledger from the bucket's {cfg.prefixes['ledger']} "
                          f"({describe(exc)}); the jobs must not start without it. Run the sync again once "
                          "the bucket can be read") from None
    files = {}
    for rel, path, _key in data_files(cfg, dest):
        entry = known.get(rel)
        if (
            isinstance(entry, dict)
            and entry.get("size") == path.stat().st_size
            and entry.get("sha256") == sha256_file(path)
        ):
            files[rel] = entry
    if files:
        write_marker(dest / UPLOADED_MARKER, cfg.bucket, files)

