"""Files as root in directories the trading user owns: the one place that opens, writes and hashes them.

The routine runs as root; the previous workspace, its markers and its trade
data belong to the trading user, who may swap any file or directory there for
a symlink or a FIFO at any moment. Everything here opens without following
links (``Beneath``, ``read_json``, ``open_dir``), creates exclusively
(``write_new``, ``copy_fd``, ``write_atomic``), removes without following
links (``remove_at``) and hashes what it opened (``sha256_fd``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, BinaryIO, Optional, Union

CHUNK = 1024 * 1024
# The suffix of anything still being built (a release, the staging directory, a wheel): a leftover when found.
PARTIAL = ".partial"
# No marker is larger than this: a bigger file is not read.
JSON_LIMIT = 64 * 1024 * 1024


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` through a temporary file renamed over it.

    Some of these directories belong to the trading user while this runs as
    root, so the temporary file is created exclusively and never through a
    symlink, and its mode is set through the descriptor.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        os.unlink(str(tmp))  # a leftover (or a planted link): removed, never followed
    except FileNotFoundError:
        pass
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(str(tmp), str(path))
    except BaseException:
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def write_json(path: Path, doc: Any, mode: int = 0o644, sort_keys: bool = False) -> None:
    """``write_atomic`` of a marker: indented JSON."""
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=sort_keys).encode(), mode)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path: Path, dir_fd: Optional[int] = None) -> Optional[dict[str, Any]]:
    """A JSON object from a regular file (``path`` relative to ``dir_fd`` when given), or None.

    Markers live in directories of the trading user and this runs as root: the
    file is opened without following a link or blocking on a FIFO, and a file
    larger than any marker is not read.
    """
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > JSON_LIMIT:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = json.loads(fh.read(JSON_LIMIT + 1).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else None


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(str(path))


DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def open_dir(path: Path, create: bool = False) -> int:
    """A descriptor of the directory at the absolute ``path``, reached without following any symlink.

    Every component is opened O_NOFOLLOW from its parent's descriptor, so a
    directory on the way that someone swapped for a link is refused (ELOOP)
    instead of followed. OSError's ``filename`` is the path up to the component
    that failed. With ``create``, missing components are made (mode 0755).
    """
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    so_far = Path("/")
    try:
        for part in path.parts[1:]:
            so_far = so_far / part
            try:
                try:
                    child = os.open(part, DIR_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, DIR_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                code = errno.ELOOP if is_link_at(fd, part) else (exc.errno or errno.EIO)  # a link: ENOTDIR too
                raise OSError(code, os.strerror(code), str(so_far)) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_link_at(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def remove_at(dir_fd: int, name: str) -> None:
    """Remove the entry ``name`` of the directory ``dir_fd`` and everything below it, following no link.

    A link is removed, never what it points at; a directory is emptied through
    descriptors opened O_NOFOLLOW, so swapping one for a link on the way fails
    instead of leading elsewhere. Missing entries are fine.
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, DIR_NOFOLLOW, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


class Beneath:
    """Opens files below a directory without following any symlink, at any depth.

    The previous workspace belongs to the trading user, and this routine runs
    as root: a file or directory there may be swapped for a symlink at any
    moment, so every path component is opened with O_NOFOLLOW relative to its
    parent's descriptor. Directory descriptors are cached; ``close`` releases them.
    ``root_fd`` (kept open by the caller) starts from an open directory instead of ``root``.
    """

    # Directory descriptors kept open at most (a tree may have thousands of directories; the
    # process may open 1,024 files): beyond it, all but the current path's chain are closed.
    MAX_OPEN = 64

    def __init__(self, root: Path, root_fd: Optional[int] = None) -> None:
        self.root = root
        self.dirs: dict[str, int] = {}
        if root_fd is not None:
            self.dirs[""] = os.dup(root_fd)

    def _dir(self, rel: str) -> int:
        fd = self.dirs.get(rel)
        if fd is None:
            if not rel:
                fd = os.open(str(self.root), DIR_NOFOLLOW)
            else:
                parent, _, name = rel.rpartition("/")
                fd = os.open(name, DIR_NOFOLLOW, dir_fd=self._dir(parent))
            if len(self.dirs) >= self.MAX_OPEN:
                chain = {""} | {rel[:i] for i, c in enumerate(rel) if c == "/"}
                for key in [k for k in self.dirs if k not in chain]:
                    os.close(self.dirs.pop(key))
            self.dirs[rel] = fd
        return fd

    def open_file(self, rel: str) -> int:
        """A descriptor of the regular file at ``rel``; OSError when anything on the way is not a plain one."""
        parent, _, name = rel.rpartition("/")
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self._dir(parent))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", rel)
        return fd

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()


def identity(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file's content or metadata changes (ctime moves with any change)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid)


def sha256_fd(fd: int, limit: Optional[int] = None) -> Optional[str]:
    """The sha256 of an open file from its start; None when it holds more than ``limit`` bytes."""
    digest = hashlib.sha256()
    size = 0
    os.lseek(fd, 0, os.SEEK_SET)
    for block in iter(lambda: os.read(fd, CHUNK), b""):
        size += len(block)
        if limit is not None and size > limit:
            return None
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a file this routine wrote (downloads, wheels, requirements)."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        digest = sha256_fd(fd)
    finally:
        os.close(fd)
    assert digest is not None
    return digest


def write_new(path: str, mode: int, source: Union[bytes, IO[bytes]]) -> None:
    """Create ``path`` (never over an existing entry) with ``mode`` exactly, from bytes or a stream."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        if isinstance(source, bytes):
            out.write(source)
        else:
            shutil.copyfileobj(source, out, CHUNK)
    os.chmod(path, mode)


def copy_fd(fd: int, path: str, mode: int, limit: Optional[int] = None) -> tuple[int, str]:
    """Copy an open file, from its start, into a new file ``path`` with ``mode``: (bytes read, sha256).

    With ``limit``, copying stops at the first block beyond it, so a file
    larger than expected shows as more than ``limit`` bytes read.
    """
    os.lseek(fd, 0, os.SEEK_SET)
    digest = hashlib.sha256()
    copied = 0
    out_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(out_fd, "wb") as out:
        for block in iter(lambda: os.read(fd, CHUNK), b""):
            copied += len(block)
            if limit is not None and copied > limit:
                break
            digest.update(block)
            out.write(block)
    os.chmod(path, mode)
    return copied, digest.hexdigest()


def snapshot(fd: int) -> tuple[BinaryIO, int, str]:
    """An open file's content as it reads now, from its start: (an unlinked copy at its start, bytes, sha256).

    For a file its owner may still be appending to: the copy and its hash agree whatever the file does
    while it is read, so what is uploaded is exactly what was hashed.
    """
    os.lseek(fd, 0, os.SEEK_SET)
    digest = hashlib.sha256()
    size = 0
    copy = tempfile.TemporaryFile()  # handed to the caller, who closes it
    try:
        for block in iter(lambda: os.read(fd, CHUNK), b""):
            size += len(block)
            digest.update(block)
            copy.write(block)
        copy.seek(0)
    except BaseException:
        copy.close()
        raise
    return copy, size, digest.hexdigest()


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give a tree root built to the owner, deepest entries first and the top last.

    Every path used runs through directories that still belong to root, so the
    new owner cannot swap one of them for a link while this runs.
    """
    if os.geteuid() != 0 and (uid, gid) == (os.geteuid(), os.getegid()):
        return
    for dirpath, dirnames, filenames in os.walk(str(root), topdown=False):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    os.chown(str(root), uid, gid, follow_symlinks=False)


def within(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def path_parts(name: str) -> list[str]:
    """The components of a path as an archive or index names it ('' and '.' dropped)."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def safe_parts(name: str) -> Optional[list[str]]:
    """The components of a relative path that stays inside its tree, or None ('..', absolute, or empty)."""
    parts = path_parts(name)
    if name.startswith("/") or ".." in parts or not parts:
        return None
    return parts


def is_sha256(value: Any) -> bool:
    """Whether ``value`` is a sha256 as the manifest and the code index write it (64 lowercase hex digits)."""
    return isinstance(value, str) and len(value) == 64 and not value.strip("0123456789abcdef")
