"""The code base of a new release: extracted from the whole archive, or built from the code index.

``extract_code`` unpacks ``code.tar.gz`` with its guards; ``build_code``
follows a ``codeindex.plan_code`` plan: directories, the previous workspace's
unchanged files hard-linked by descriptor, changed files fetched with ranged
GETs, links last. Either way no entry is placed through or over a link, each
link is checked as it is made (``place_link``), and ``check_links`` judges
the finished tree.
"""

from __future__ import annotations

import errno
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .codeindex import Group, Plan, coalesce, member_data
from .errors import Failure
from .fsutil import Beneath, copy_fd, identity, path_parts, safe_parts, within, write_new
from .s3 import FETCH_WORKERS, Bucket

# --------------------------------------------------------------------------- the whole archive


def extract_code(archive: Path, dest: Path) -> int:
    """Extract a gzip tar refusing absolute paths, '..', links leaving dest, members through or over a link,
    and special files."""
    root = os.path.realpath(str(dest))
    count = 0
    links: set[str] = set()
    try:
        with tarfile.open(str(archive), "r:gz") as tar:
            for member in tar:
                count += extract_member(tar, member, root, links)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Failure(f"code archive is not a valid gzip tar: {exc}") from None
    return count


def extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str, links: set[str]) -> int:
    """Place one archive member under ``root``; returns 1 for a file, else 0. ``links``: the links made so far."""
    name = member.name
    if not path_parts(name) and member.isdir():
        return 0
    parts = safe_parts(name)
    if parts is None:
        raise Failure(f"code archive member {name!r} has an unsafe path; refusing this release")
    for depth in range(1, len(parts) + 1):
        above = "/".join(parts[:depth])
        if above in links:
            raise Failure(f"code archive member {name!r} passes through or replaces the link {above!r}; refusing")
    target = os.path.join(root, *parts)
    if not within(root, os.path.realpath(os.path.dirname(target))):
        raise Failure(f"code archive member {name!r} escapes the workspace; refusing")
    if member.isdir():
        os.makedirs(target, exist_ok=True)
        os.chmod(target, 0o755)  # noqa: S103 - code directories are world-readable
        return 0
    if member.isfile():
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            raise Failure(f"code archive lists {name!r} twice; refusing")
        source = tar.extractfile(member)
        if source is None:
            raise Failure(f"code archive member {name!r} is unreadable")
        write_new(target, 0o755 if member.mode & 0o111 else 0o644, source)
        return 1
    if member.issym():
        if os.path.lexists(target):
            raise Failure(f"code archive lists {name!r} twice; refusing")
        place_link(root, target, member.linkname, f"code archive link {name!r}")
        links.add("/".join(parts))
        return 0
    raise Failure(f"code archive member {name!r} is a hard link or special file; refusing")


def place_link(root: str, target: str, link: str, what: str) -> None:
    """Make the link ``target`` -> ``link`` after checking it leads inside ``root`` as the tree is now.

    A later link can still change where this one leads (a chain): ``check_links``
    judges the finished tree; nothing is ever placed through a link meanwhile.
    """
    resolved = os.path.realpath(os.path.join(os.path.dirname(target), link))
    if link.startswith("/") or not within(root, resolved) \
            or not within(root, os.path.realpath(os.path.dirname(target))):
        raise Failure(f"{what} -> {link!r} points outside the workspace; refusing")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(link, target)


# --------------------------------------------------------------------------- by the index


def build_code(bucket: Bucket, code: dict[str, Any], entries: list[Any], plan: Plan,
               dest: Path) -> tuple[int, int, int, int]:
    """Build the code base in ``dest`` from the index: unchanged files hard-linked, changed ones fetched.

    Returns (files, reused, fetched, ranged requests). Changed files come from
    ranged GETs of the release's code archive, each member decompressed on
    its own and checked against the index's sha256.
    """
    previous, reuse, fetch = plan
    root = os.path.realpath(str(dest))
    make_dirs(entries, root)
    reused, changed = link_unchanged(entries, previous, reuse, root)
    fetch = list(fetch) + changed
    requests = fetch_members(bucket, code["key"], fetch, root)
    make_links(entries, root)
    check_links(dest)
    files = sum(1 for e in entries if e["type"] == "file")
    return files, reused, len(fetch), requests


def make_dirs(entries: list[Any], root: str) -> None:
    for e in entries:
        if e["type"] == "dir":
            target = os.path.join(root, e["path"])
            os.makedirs(target, exist_ok=True)
            os.chmod(target, 0o755)  # noqa: S103 - code directories are world-readable


def link_unchanged(entries: list[Any], previous: Path, reuse: dict[str, tuple[int, ...]], root: str
                   ) -> tuple[int, list[dict[str, Any]]]:
    """Link the planned files of the previous workspace: (how many, the entries to fetch instead).

    A file gone, replaced or changed since ``plan_code`` hashed it is fetched.
    """
    reused = 0
    refetch: list[dict[str, Any]] = []
    beneath = Beneath(previous)
    try:
        proc_fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        proc_fd = -1
    try:
        for e in entries:
            if e["type"] != "file" or e["path"] not in reuse:
                continue
            try:
                fd = beneath.open_file(e["path"])
            except OSError:
                refetch.append(e)  # gone or replaced since it was hashed
                continue
            try:
                if identity(os.fstat(fd)) != reuse[e["path"]]:
                    refetch.append(e)  # changed since it was hashed
                    continue
                link_or_copy(fd, os.path.join(root, e["path"]), e, proc_fd)
                reused += 1
            finally:
                os.close(fd)
    finally:
        beneath.close()
        if proc_fd >= 0:
            os.close(proc_fd)
    return reused, refetch


def link_or_copy(fd: int, target: str, e: dict[str, Any], proc_fd: int) -> None:
    """Link the very file that was hashed (by its descriptor, never by a path the user controls).

    linkat(2) with AT_SYMLINK_FOLLOW on /proc/self/fd/<fd> links the open
    file; os.link only passes that flag when a directory descriptor is given.
    """
    if not os.path.isdir(os.path.dirname(target)):
        os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        if proc_fd < 0:
            raise OSError(errno.ENOENT, "no /proc/self/fd")
        os.link(str(fd), target, src_dir_fd=proc_fd, follow_symlinks=True)
    except OSError:  # no /proc, another file system, or links refused: copy what was hashed
        copied, digest = copy_fd(fd, target, e["mode"], e["size"])
        if copied != e["size"] or digest != e["sha256"]:
            raise Failure(f"{e['path']!r} changed while it was being copied; try again") from None


def fetch_members(bucket: Bucket, key: str, fetch: list[dict[str, Any]], root: str) -> int:
    """Fetch the files' gzip members with ranged GETs of the archive (in parallel); returns the requests made."""
    groups = coalesce(fetch)
    if not groups:
        return 0

    def get(group: Group) -> bytes:
        start, end, _ = group
        return bucket.read_range(key, start, end)

    with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(groups))) as pool:
        for body, (start, _, members) in zip(pool.map(get, groups), groups):
            for e in members:
                offset = e["offset"] - start
                data = member_data(body[offset : offset + e["length"]], e)
                target = os.path.join(root, e["path"])
                if not os.path.isdir(os.path.dirname(target)):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                write_new(target, e["mode"], data)
    return len(groups)


def make_links(entries: list[Any], root: str) -> None:
    """Links come last, when every file is in place, each checked as it is made (no entry passes through
    one: ``codeindex.refuse_paths_through_links``); check_links then judges the chains."""
    for e in entries:
        if e["type"] == "symlink":
            target = os.path.join(root, e["path"])
            if os.path.lexists(target):
                raise Failure(f"code index link {e['path']!r} collides with another entry; refusing")
            place_link(root, target, e["target"], f"code index link {e['path']!r}")


def check_links(root_dir: Path) -> None:
    """Every symlink of a finished code tree must resolve inside it.

    Each link is checked when it is made, but a later link can change where
    an earlier one leads (a chain through ``.`` links); only the finished
    tree tells, and root writes into it afterwards.
    """
    root = os.path.realpath(str(root_dir))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not within(root, os.path.realpath(path)):
                rel = os.path.relpath(path, root)
                raise Failure(f"code link {rel!r} -> {os.readlink(path)!r} leads outside the workspace; refusing")
