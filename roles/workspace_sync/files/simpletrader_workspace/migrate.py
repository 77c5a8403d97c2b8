"""The state of earlier versions (``<parent of workdir>/.simpletrader``) moved into root's state dir, once.

Earlier versions kept the releases, virtualenvs, wheelhouse, uv's cache, the
ready marker and the cron jobs' logs in ``old_state_dir``, inside the trading
user's projects directory: that user could rename it or plant links in it at
any moment. ``migrate`` runs under the lock at the start of every sync and eod
and as the ``migrate`` command (which the role runs), and does nothing once
the old directory is gone. It opens the old directory from ``/`` without
following a link and then works only through descriptors (``fsutil``), never
by a path the user could change, in an order a rerun resumes after an
interruption at any point:

1. every release directory is renamed into ``<state_dir>/releases/`` (one
   atomic rename each, so state_dir must be on the same file system; trade
   data and upload markers go with it);
2. the workdir symlink is switched to the moved current release;
3. the current release's virtualenv, which records its own absolute path and
   cannot move, is rebuilt in ``<state_dir>/venvs/`` from that release's
   requirements.txt (its sha256 must be the virtualenv's name and the
   requirements.txt the bucket's manifest lists: the old directory is the
   trading user's, and a requirements.txt can name a source tree whose build
   runs as root) with the wheels the bucket's manifest lists; a wheel of the
   old wheelhouse is used only when its sha256 is the manifest's, the
   others are downloaded;
4. the ready marker is carried over, pointing at the moved release and the
   rebuilt virtualenv (when that could not be rebuilt it is not: the cron
   jobs wait for the next sync, which builds it, and the old virtualenvs and
   marker stay in the old directory until a run has rebuilt it);
5. the cron jobs' logs move to ``<state_dir>/logs/``;
6. the rest (old virtualenvs, wheelhouse, cache, marker, leftovers, any link
   planted there) is removed without following links, then the directory.
   Anything else is kept, and said so.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import s3, statedir, workdir
from .config import Config
from .errors import Failure
from .fsutil import (
    DIR_NOFOLLOW,
    PARTIAL,
    Beneath,
    copy_fd,
    fsync_dir,
    is_sha256,
    open_dir,
    read_json,
    remove_at,
    remove_tree,
)
from .manifest import by_role, read_manifest
from .output import Outcome, say
from .release import read_meta, write_ready
from .venv import ensure_venv, fetch_wheel, venv_complete

# What the old directory held that was the routine's own: removed once the rest has moved.
OWN = ("venvs", "wheelhouse", "uv-cache", "ready.json", "staging" + PARTIAL)
# Where the migration keeps the requirements.txt it verified (a leftover is removed by the next run).
WORK = "migrate" + PARTIAL
REQUIREMENTS_LIMIT = 1024 * 1024
READY_KEYS = ("release", "date", "python", "venv", "release_dir", "workdir", "token_published_at", "synced_at")


@dataclass
class Old:
    """The old state dir, open: its descriptor, and its parent's (to remove it by name at the end)."""

    path: Path
    parent_fd: int
    fd: int

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.parent_fd)


def run(cfg: Config) -> Outcome:
    """``simpletrader-workspace migrate``: what the role runs once it has installed the routine."""
    statedir.prepare(cfg)
    done = migrate(cfg, "migrate")
    if done is None:
        return Outcome("nothing to migrate", {"migrated": False})
    return Outcome(done, {"migrated": True})


def migrate(cfg: Config, cmd: str) -> Optional[str]:
    """Move the old state dir's content into ``state_dir``; what was done, or None when there was nothing."""
    old = open_old(cfg, cmd)
    if old is None:
        return None
    try:
        if os.fstat(old.fd).st_dev != os.stat(str(cfg.releases)).st_dev:
            raise Failure(f"the old state dir {old.path} is on another file system than {cfg.state_dir}, so its "
                          "releases cannot be moved; set state_dir to a root-owned directory on that file system")
        say(cmd, f"moving the state of earlier versions from {old.path} to {cfg.state_dir}")
        moved, kept = move_releases(cfg, old, cmd)
        current = current_name(cfg, old)
        venv, rebuilt = None, True
        if current is not None:
            target = cfg.releases / current
            if workdir.read_link(cfg) != str(target):
                workdir.switch(cfg, target)
            venv = rebuild_venv(cfg, old, target, cmd)
            rebuilt = venv is not None or not is_sha256(read_meta(target).get("venv"))
        carried = carry_ready(cfg, old, current, venv, cmd)
        logs = move_logs(cfg, old)
        # The old virtualenv goes only once the new one is built: until then a rerun tries again.
        removed = remove_old(cfg, old, kept, () if rebuilt else ("venvs", "ready.json"), cmd)
    finally:
        old.close()
    parts = [f"moved {moved} release(s)"] + (["the ready marker"] if carried else []) + (
        [f"{logs} job log(s)"] if logs else [])
    summary = f"{', '.join(parts)} from {old.path} to {cfg.state_dir}"
    return summary + ("" if removed else f"; {old.path} is kept")


def open_old(cfg: Config, cmd: str) -> Optional[Old]:
    """The old state dir, opened without following a link; None when there is none."""
    path = cfg.old_state_dir
    if path == cfg.state_dir:
        return None
    try:
        parent_fd = open_dir(path.parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Failure(f"cannot look for the state of earlier versions at {path}: {exc.filename} is "
                      f"{'a symbolic link' if exc.errno == errno.ELOOP else exc.strerror}; it must be reached without "
                      "following one") from None
    try:
        fd = os.open(path.name, DIR_NOFOLLOW, dir_fd=parent_fd)
    except OSError as exc:
        os.close(parent_fd)
        if not isinstance(exc, FileNotFoundError):
            say(cmd, f"WARNING: {path} is not a directory (a link or a file); nothing is moved from it")
        return None
    return Old(path, parent_fd, fd)


def move_releases(cfg: Config, old: Old, cmd: str) -> tuple[int, list[str]]:
    """Rename each release directory into root's releases/; returns (moved, names kept for a name clash)."""
    try:
        src = os.open("releases", DIR_NOFOLLOW, dir_fd=old.fd)
    except OSError:
        return 0, []
    dst = os.open(str(cfg.releases), DIR_NOFOLLOW)
    moved, kept = 0, []
    try:
        for name in sorted(os.listdir(src)):
            if name.endswith(PARTIAL) or name.startswith(".") \
                    or not stat.S_ISDIR(os.stat(name, dir_fd=src, follow_symlinks=False).st_mode):
                continue  # a leftover, or something planted: removed with the old directory
            if exists_at(dst, name):
                say(cmd, f"WARNING: not moving release {name}: {cfg.releases} has one of that name")
                kept.append(name)
                continue
            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
            st = os.stat(name, dir_fd=dst, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):  # swapped for a link between the look and the move
                os.unlink(name, dir_fd=dst)
            elif stat.S_ISDIR(st.st_mode):
                moved += 1
    finally:
        os.close(src)
        os.close(dst)
    fsync_dir(cfg.releases)
    return moved, kept


def exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def current_name(cfg: Config, old: Old) -> Optional[str]:
    """The release the workdir symlink points at, in the old releases/ or (moved already) in the new one."""
    text = workdir.read_link(cfg)
    if text is None:
        return None
    target = Path(text)
    if target.parent not in (old.path / "releases", cfg.releases):
        return None
    st = os.lstat(str(cfg.releases / target.name)) if os.path.lexists(str(cfg.releases / target.name)) else None
    return target.name if st is not None and stat.S_ISDIR(st.st_mode) else None


def rebuild_venv(cfg: Config, old: Old, release: Path, cmd: str) -> Optional[str]:
    """The current release's virtualenv, built again in root's venvs/; its name, or None when it could not be."""
    req_hash = read_meta(release).get("venv")
    if not is_sha256(req_hash):
        return None
    assert isinstance(req_hash, str)
    if venv_complete(cfg, req_hash):
        return req_hash
    work = cfg.state_dir / WORK
    remove_tree(work)
    work.mkdir(mode=0o700)
    try:
        requirements = work / "requirements.txt"
        beneath = Beneath(release)
        try:
            fd = beneath.open_file("requirements.txt")
            try:
                size, digest = copy_fd(fd, str(requirements), 0o644, REQUIREMENTS_LIMIT)
            finally:
                os.close(fd)
        finally:
            beneath.close()
        if size > REQUIREMENTS_LIMIT or digest != req_hash:
            raise Failure("its requirements.txt is not the one it was built from")
        bucket = s3.Bucket(s3.client(cfg), cfg.bucket)
        objects = by_role(read_manifest(cfg, bucket))
        # The old directory is the trading user's: what it holds, root installs only when the operator
        # published it. A requirements.txt can name a local source tree whose build runs as root.
        if req_hash not in {obj.get("sha256") for obj in objects.get("requirements", [])}:
            raise Failure("its requirements.txt is not the one the bucket's manifest lists, and root installs "
                          "only published requirements")
        for obj in objects.get("wheel", []):
            seed_wheel(cfg, old, obj)
            fetch_wheel(cfg, bucket, obj)
        ensure_venv(cfg, requirements, req_hash, cmd)
        return req_hash
    except (Failure, OSError) + s3.aws_errors() as exc:
        say(cmd, f"WARNING: could not rebuild the virtualenv {req_hash[:12]} of release {release.name} "
                 f"({s3.describe(exc)}); the next sync builds it")
        return None
    finally:
        remove_tree(work)


def seed_wheel(cfg: Config, old: Old, obj: dict[str, Any]) -> None:
    """The old wheelhouse's copy of a wheel the manifest lists, into root's wheelhouse if its sha256 matches."""
    name = str(obj["key"]).rsplit("/", 1)[-1]
    if os.path.lexists(str(cfg.wheelhouse / name)):
        return
    beneath = Beneath(old.path, old.fd)
    try:
        fd = beneath.open_file("wheelhouse/" + name)
    except OSError:
        return
    finally:
        beneath.close()
    tmp = cfg.wheelhouse / (name + PARTIAL)
    remove_tree(tmp)
    try:
        size, digest = copy_fd(fd, str(tmp), 0o644, obj["size"])
    finally:
        os.close(fd)
    if size == obj["size"] and digest == obj["sha256"]:
        os.replace(str(tmp), str(cfg.wheelhouse / name))
    else:
        tmp.unlink()


def carry_ready(cfg: Config, old: Old, current: Optional[str], venv: Optional[str], cmd: str) -> bool:
    """The old ready marker, rewritten for the moved release and the rebuilt virtualenv."""
    ready = read_json(Path("ready.json"), dir_fd=old.fd)
    if ready is None:
        return False
    release_dir = ready.get("release_dir")
    if current is None or venv is None or ready.get("venv") != venv or not isinstance(release_dir, str) \
            or Path(release_dir).name != current:
        say(cmd, f"the ready marker of {old.path} is not carried over: the cron jobs wait for the next sync")
        return False
    doc = {key: ready.get(key) if isinstance(ready.get(key), str) else None for key in READY_KEYS}
    doc.update(python=str(cfg.venvs / venv / "bin" / "python"), venv=venv, release_dir=str(cfg.releases / current),
               workdir=str(cfg.workdir))
    write_ready(cfg, doc)
    return True


def move_logs(cfg: Config, old: Old) -> int:
    """The cron jobs' logs into ``<state_dir>/logs/`` (the whole directory, or file by file if it exists)."""
    try:
        src = os.open("logs", DIR_NOFOLLOW, dir_fd=old.fd)
    except OSError:
        return 0
    state = os.open(str(cfg.state_dir), DIR_NOFOLLOW)
    try:
        names = [n for n in os.listdir(src) if not stat.S_ISLNK(os.stat(n, dir_fd=src, follow_symlinks=False).st_mode)]
        if not exists_at(state, "logs"):
            os.rename("logs", "logs", src_dir_fd=old.fd, dst_dir_fd=state)
            dst = os.open("logs", DIR_NOFOLLOW, dir_fd=state)
            try:
                for name in os.listdir(dst):  # links planted in it go
                    if stat.S_ISLNK(os.stat(name, dir_fd=dst, follow_symlinks=False).st_mode):
                        os.unlink(name, dir_fd=dst)
            finally:
                os.close(dst)
            return len(names)
        dst = os.open("logs", DIR_NOFOLLOW, dir_fd=state)
        try:
            for name in names:
                target, n = name, 0
                while exists_at(dst, target):
                    n += 1
                    target = f"{name}.migrated-{n}"
                os.rename(name, target, src_dir_fd=src, dst_dir_fd=dst)
        finally:
            os.close(dst)
        return len(names)
    finally:
        os.close(src)
        os.close(state)


def remove_old(cfg: Config, old: Old, kept: list[str], keep: tuple[str, ...], cmd: str) -> bool:
    """Remove what is left of the old directory but ``keep``, then the directory; False when something stays."""
    left: list[str] = []
    for name in sorted(os.listdir(old.fd)):
        if name in keep:
            continue
        if name == "releases" and stat.S_ISDIR(os.stat(name, dir_fd=old.fd, follow_symlinks=False).st_mode):
            if not clear_releases(old, kept):
                left.append(name)
        elif name in OWN + ("releases", "logs") or (name.startswith(".") and ".tmp-" in name):
            remove_at(old.fd, name)
        else:
            left.append(name)
    if left:
        say(cmd, f"WARNING: kept {', '.join(left)} in {old.path}: not the routine's to remove")
    if keep:
        say(cmd, f"kept {', '.join(keep)} in {old.path} until the virtualenv is rebuilt; the next run tries again")
    if left or keep:
        return False
    here = os.fstat(old.fd)
    try:
        at = os.stat(old.path.name, dir_fd=old.parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if (at.st_dev, at.st_ino) == (here.st_dev, here.st_ino):
        os.rmdir(old.path.name, dir_fd=old.parent_fd)
    return True


def clear_releases(old: Old, kept: list[str]) -> bool:
    """Remove the old releases/ but for the release directories kept; True when it went."""
    fd = os.open("releases", DIR_NOFOLLOW, dir_fd=old.fd)
    try:
        for name in os.listdir(fd):
            if name not in kept:
                remove_at(fd, name)
    finally:
        os.close(fd)
    if kept:
        return False
    os.rmdir("releases", dir_fd=old.fd)
    return True
