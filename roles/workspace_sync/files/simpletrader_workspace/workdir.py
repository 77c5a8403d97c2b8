"""The workdir (``host.workdir``): a symlink, in the trading user's directory, to the current release.

That directory belongs to the trading user, who may swap it, or any directory
of theirs above it, for a link at any moment. So root never works there by
path: ``open_parent`` opens it from ``/`` without following any link
(``fsutil.open_dir``; a link on the way is refused, not followed), and every
change is made relative to that descriptor: the atomic switch (a new link
under a temporary name, renamed over the workdir), a plain workdir adopted
as a release, the temporary links an interrupted switch left behind.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Optional

from .clock import utc_now, utc_stamp
from .config import Config
from .errors import Failure
from .fsutil import DIR_NOFOLLOW, open_dir, write_json
from .output import say
from .release import RELEASE_META


def _refused(cfg: Config, exc: OSError) -> Failure:
    if exc.errno == errno.ELOOP:
        return Failure(f"{exc.filename} is a symbolic link; the workdir {cfg.workdir} must be reached without "
                       "following one")
    return Failure(f"cannot open {exc.filename or cfg.workdir.parent} ({exc.strerror}); it holds the workdir "
                   f"{cfg.workdir}")


def open_parent(cfg: Config, owner: Optional[tuple[int, int]] = None) -> Optional[int]:
    """A descriptor of the workdir's directory, reached without following a link; None when it is missing.

    With ``owner`` (uid, gid) a missing directory is made (mode 0755) and given to the owner.
    """
    parent = cfg.workdir.parent
    try:
        try:
            return open_dir(parent)
        except FileNotFoundError:
            if owner is None:
                return None
        above = open_dir(parent.parent, create=True)
        try:
            os.mkdir(parent.name, 0o755, dir_fd=above)
            fd = os.open(parent.name, DIR_NOFOLLOW, dir_fd=above)
        finally:
            os.close(above)
        os.fchown(fd, *owner)
        return fd
    except OSError as exc:
        raise _refused(cfg, exc) from None


def prepare(cfg: Config, owner: tuple[int, int]) -> None:
    """The workdir's directory exists (the owner's when made here) and is reached without a link."""
    fd = open_parent(cfg, owner)
    assert fd is not None
    os.close(fd)


def read_link(cfg: Config) -> Optional[str]:
    """Where the workdir symlink points (its text, not followed); None when it is not a symlink."""
    fd = open_parent(cfg)
    if fd is None:
        return None
    try:
        return os.readlink(cfg.workdir.name, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def switch(cfg: Config, target: Path) -> None:
    """Point the workdir at ``target`` atomically: a new link under a temporary name, renamed over it."""
    fd = open_parent(cfg)
    if fd is None:
        raise Failure(f"the directory of the workdir {cfg.workdir} is gone; run the command again")
    name = cfg.workdir.name
    tmp = f".{name}.tmp-{os.getpid()}"
    try:
        try:
            os.unlink(tmp, dir_fd=fd)
        except FileNotFoundError:
            pass
        os.symlink(str(target), tmp, dir_fd=fd)
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_switch_leftovers(cfg: Config, cmd: str) -> None:
    """The temporary links of a switch that was interrupted (``.<workdir name>.tmp-<pid>``)."""
    fd = open_parent(cfg)
    if fd is None:
        return
    prefix = f".{cfg.workdir.name}.tmp-"
    try:
        for name in os.listdir(fd):
            if name.startswith(prefix) and stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                say(cmd, f"removing leftover {cfg.workdir.parent / name}")
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def adopt_legacy(cfg: Config, cmd: str) -> None:
    """A plain workdir (a host set up by the original CDK app) becomes a release, and the workdir a link to it."""
    wd = cfg.workdir
    fd = open_parent(cfg)
    if fd is None:
        return
    try:
        try:
            st = os.stat(wd.name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            return
        if not stat.S_ISDIR(st.st_mode):
            raise Failure(f"workdir {wd} exists and is not a directory; move it away")
        dest = cfg.releases / ("legacy-" + utc_stamp())
        say(cmd, f"moving the existing workdir {wd} aside to {dest} (its data is kept)")
        releases = os.open(str(cfg.releases), DIR_NOFOLLOW)
        try:
            try:
                os.rename(wd.name, dest.name, src_dir_fd=fd, dst_dir_fd=releases)
            except OSError as exc:
                raise Failure(
                    f"cannot move the existing workdir {wd} to {dest} ({exc.strerror}); state_dir must be "
                    "on the same file system as the workdir"
                ) from None
            moved = os.stat(dest.name, dir_fd=releases, follow_symlinks=False)
            if not stat.S_ISDIR(moved.st_mode):  # swapped between the look and the move
                if stat.S_ISLNK(moved.st_mode):
                    os.unlink(dest.name, dir_fd=releases)
                raise Failure(f"workdir {wd} changed while it was being moved aside; run the command again")
        finally:
            os.close(releases)
    finally:
        os.close(fd)
    write_json(dest / RELEASE_META, {"release": "legacy", "legacy": True, "synced_at": "", "adopted_at": utc_now()})
    switch(cfg, dest)
