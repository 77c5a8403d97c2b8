"""Root's state directory (``/var/lib/simpletrader``): checked before anything is written there, then made.

It holds the releases, the virtualenvs, the wheelhouse, uv's cache and the
ready marker, and root writes, deletes and chowns there by path. That is
safe only if nobody else can change a directory on the way, so ``prepare``
refuses the state dir unless:

- every directory from ``/`` down to it is owned by root (or by whoever runs
  the routine) and is not writable by others (a sticky one, like ``/tmp``,
  may be: nobody else can rename root's entries there), and none of them is
  a symbolic link;
- the state dir, and each directory the routine keeps in it, is owned by
  root and writable by root only.

The release directories inside belong to the trading user (its workspace);
root works in them only through ``fsutil``'s no-follow opens.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from .config import Config
from .errors import Failure

EXAMPLE = "/var/lib/simpletrader"


def prepare(cfg: Config) -> None:
    """Check the state dir's place, then make it and its directories (mode 0755) or check them."""
    trading_uid = cfg.owner_ids()[0]
    check_ancestors(cfg, trading_uid)
    for path in (cfg.state_dir, cfg.releases, cfg.venvs, cfg.wheelhouse):
        try:
            os.mkdir(str(path), 0o755)
        except FileExistsError:
            pass
        check_own(path, "state dir" if path == cfg.state_dir else "state directory")
    if os.path.lexists(str(cfg.uv_cache)):
        check_own(cfg.uv_cache, "state directory")


def trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_ancestors(cfg: Config, trading_uid: int) -> None:
    """Every existing directory above the state dir is root's alone; the missing ones are made (0755)."""
    state = cfg.state_dir
    for ancestor in reversed(state.parents):
        try:
            st = os.lstat(str(ancestor))
        except FileNotFoundError:
            os.makedirs(str(state.parent), 0o755, exist_ok=True)
            return
        if stat.S_ISLNK(st.st_mode):
            raise Failure(f"state dir {state} is reached through the symbolic link {ancestor}; give its real path")
        if not stat.S_ISDIR(st.st_mode):
            raise Failure(f"state dir {state}: {ancestor} is not a directory")
        name = user_name(st.st_uid)
        if not trusted(st.st_uid):
            who = f"the trading user {cfg.user!r}" if st.st_uid == trading_uid else f"user {name}"
            why = f"owned by {name}"
        elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            who, why = "other users", f"mode {stat.S_IMODE(st.st_mode):04o}"
        else:
            continue
        raise Failure(f"state dir {state} is inside {ancestor}, which {who} can change ({why}); use a directory "
                      f"only root controls, e.g. {EXAMPLE}")


def check_own(path: Path, what: str) -> None:
    """The state dir, or one of root's directories in it, must be a directory of root's, writable by root only."""
    st = os.lstat(str(path))
    if stat.S_ISLNK(st.st_mode):
        raise Failure(f"{what} {path} is a symbolic link; give the state dir's real path")
    if not stat.S_ISDIR(st.st_mode) or not trusted(st.st_uid) or st.st_mode & 0o022:
        raise Failure(
            f"{what} {path} must be a directory owned by root and writable by root only (it is owned by "
            f"{user_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}); move it away, then run the "
            "command again"
        )
