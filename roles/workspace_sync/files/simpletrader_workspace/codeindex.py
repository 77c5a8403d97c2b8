"""The code index (docs/CONTRACTS.md): what each file of the code archive is, and where its gzip member lies.

``read_code_index`` downloads and checks it; ``plan_code`` decides which
files the previous workspace can give (hashed now) and which to fetch;
``coalesce`` groups the members to fetch into ranged requests; ``member_data``
inflates one member and checks it. Building the tree from the plan is
``codebase.build_code``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zlib
from pathlib import Path
from typing import Any, Optional

from .config import Config
from .errors import Failure
from .fsutil import Beneath, identity, is_sha256, safe_parts, sha256_fd
from .s3 import Bucket

CODE_INDEX_VERSION = 1
# Ranges of the code archive closer than this are fetched in one request.
RANGE_GAP = 1024 * 1024
# The largest code index read.
INDEX_LIMIT = 64 * 1024 * 1024

# (the previous workspace, {path: identity of the file hashed there}, entries to fetch)
Plan = tuple[Path, dict[str, tuple[int, ...]], list[dict[str, Any]]]
Group = tuple[int, int, list[dict[str, Any]]]


def read_code_index(bucket: Bucket, manifest: dict[str, Any], code: dict[str, Any]) -> Optional[list[Any]]:
    """The code index's entries (docs/CONTRACTS.md), or None when the manifest has none.

    The index is verified like every object the manifest lists, must point at
    the manifest's code archive, and every entry is checked before any is used.
    """
    ref = manifest.get("code_index")
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise Failure("manifest has an invalid code_index entry")
    key, size, digest = ref.get("key"), ref.get("size"), ref.get("sha256")
    if not isinstance(key, str) or not key or not isinstance(size, int) or isinstance(size, bool) \
            or not 0 <= size <= INDEX_LIMIT or not is_sha256(digest):
        raise Failure("manifest has an invalid code index entry")
    try:
        doc = json.loads(bucket.read_verified(key, size, str(digest), "code index").decode("utf-8"))
    except ValueError:
        raise Failure("the code index is not valid JSON; refusing this release") from None
    if not isinstance(doc, dict) or doc.get("version") != CODE_INDEX_VERSION:
        raise Failure("the code index has an unknown version; update the host routine")
    archive = doc.get("archive") or {}
    if (archive.get("key"), archive.get("size"), archive.get("sha256")) != (code["key"], code["size"], code["sha256"]):
        raise Failure("the code index belongs to another code archive; refusing this release")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise Failure("the code index has no entry list; refusing this release")
    seen: set[str] = set()
    for e in entries:
        check_entry(e, code["size"], seen)
    refuse_paths_through_links(entries)
    return entries


def refuse_paths_through_links(entries: list[dict[str, Any]]) -> None:
    """No entry may pass through a link entry, wherever in the index either is: the tree is built
    directories first and links last, and nothing may be placed where a link leads."""
    links = {e["path"] for e in entries if e["type"] == "symlink"}
    for e in entries:
        parts = e["path"].split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if above in links:
                raise Failure(f"code index entry {e['path']!r} passes through the link {above!r}; "
                              "refusing this release")


def check_entry(e: Any, archive_size: int, seen: set[str]) -> None:
    """Check one entry, the first time its path is seen, and normalise that path in place."""
    if not isinstance(e, dict) or not isinstance(e.get("path"), str):
        raise Failure("the code index has an invalid entry; refusing this release")
    parts = safe_parts(e["path"])
    if parts is None:
        raise Failure(f"code index entry {e['path']!r} has an unsafe path; refusing this release")
    rel = "/".join(parts)
    if rel in seen:
        raise Failure(f"the code index lists {rel!r} twice; refusing this release")
    seen.add(rel)
    e["path"] = rel
    kind = e.get("type")
    if kind == "file":
        nums = [e.get(k) for k in ("size", "offset", "length", "mode")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in nums) \
                or e["mode"] not in (0o644, 0o755) \
                or e["length"] == 0 or e["offset"] + e["length"] > archive_size \
                or not is_sha256(e.get("sha256")):
            raise Failure(f"the code index entry {rel!r} is invalid; refusing this release")
    elif kind == "symlink":
        if not isinstance(e.get("target"), str) or not e["target"]:
            raise Failure(f"the code index entry {rel!r} is invalid; refusing this release")
    elif kind != "dir":
        raise Failure(f"the code index entry {rel!r} has an unknown type {kind!r}; refusing this release")


def previous_files(cfg: Config, previous: Path) -> dict[str, os.stat_result]:
    """Regular files of the previous workspace reachable without following a symlink, by relative path.

    Its trade data and ``__pycache__`` directories are not code and are skipped.
    """
    found: dict[str, os.stat_result] = {}
    top_skip = {cfg.trade_logs.split("/")[0], cfg.ledger.split("/")[0]}
    for dirpath, dirnames, filenames in os.walk(str(previous)):
        rel_dir = os.path.relpath(dirpath, str(previous))
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not (not rel_dir and d in top_skip)]
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                found[rel_dir + name] = st
    return found


def plan_code(cfg: Config, entries: list[Any], previous: Optional[Path], archive_size: int, uid: int
              ) -> Optional[Plan]:
    """Which files to take from the previous workspace and which to fetch, or None to use the whole archive.

    A file is taken from the previous workspace (a release directory of this
    state dir, nothing the workdir symlink could be pointed at) only when it
    is a regular file owned by the owner user whose size, mode and sha256 match
    the index now; hashing every candidate is what makes a reused file as
    trustworthy as a downloaded one. Its identity (inode, times) is kept, so
    the file linked later is the very one that was hashed.
    """
    if previous is None or previous.parent != Path(os.path.realpath(str(cfg.releases))):
        return None
    files = previous_files(cfg, previous)
    reuse: dict[str, tuple[int, ...]] = {}
    fetch: list[dict[str, Any]] = []
    beneath = Beneath(previous)
    try:
        for e in entries:
            if e["type"] != "file":
                continue
            st = files.get(e["path"])
            if st is not None and st.st_size == e["size"] and stat.S_IMODE(st.st_mode) == e["mode"] \
                    and st.st_uid == uid:
                seen = hashed_identity(beneath, e, st)
                if seen is not None:
                    reuse[e["path"]] = seen
                    continue
            fetch.append(e)
    finally:
        beneath.close()
    if sum(e["length"] for e in fetch) * 2 > archive_size:
        return None  # most of the archive changed: one download is cheaper than many ranges
    return previous, reuse, fetch


def hashed_identity(beneath: Beneath, e: dict[str, Any], st: os.stat_result) -> Optional[tuple[int, ...]]:
    """The identity of the file at the entry's path when it is the one walked (``st``) and hashes as the entry."""
    try:
        fd = beneath.open_file(e["path"])
    except OSError:
        return None
    try:
        seen = os.fstat(fd)
        if identity(seen) == identity(st) and sha256_fd(fd, e["size"]) == e["sha256"]:
            return identity(seen)
        return None
    finally:
        os.close(fd)


def coalesce(entries: list[dict[str, Any]]) -> list[Group]:
    """Group the members to fetch into ranges [start, end) of the archive, merging close neighbours."""
    groups: list[Group] = []
    for e in sorted(entries, key=lambda x: x["offset"]):
        start, end = e["offset"], e["offset"] + e["length"]
        if groups and start - groups[-1][1] <= RANGE_GAP:
            first, last, members = groups[-1]
            groups[-1] = (first, max(last, end), members + [e])
        else:
            groups.append((start, end, [e]))
    return groups


def member_data(member: bytes, e: dict[str, Any]) -> bytes:
    """A file's content from its gzip member (one tar entry: header blocks, data, padding), verified."""
    padded = (e["size"] + 511) // 512 * 512
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflate.decompress(member, padded + 64 * 1024)  # headers are a few blocks; never inflate more
    except zlib.error:
        raw = b""
    if not inflate.eof or inflate.unused_data or len(raw) < padded + 512 or (len(raw) - padded) % 512:
        raise Failure(f"code archive member of {e['path']!r} is not what the index says; refusing this release")
    data = raw[len(raw) - padded : len(raw) - padded + e["size"]]
    if hashlib.sha256(data).hexdigest() != e["sha256"]:
        raise Failure(f"sha256 mismatch for {e['path']!r} in the code archive; refusing this release")
    return data
