"""Root works only in root's directories: what the trading user plants changes nothing outside.

The routine runs as root, the workspace belongs to the trading user (here
``nobody``, so these tests need root). Each test plants links the way that
user could, runs the routine, then looks at the *outside*: a canary
directory and file the links point at must be exactly as they were
(docs/SECURITY.md, "The host: root and the trading user").
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Any

import pytest
from wshelpers import Host, canary, snapshot

pytestmark = pytest.mark.root  # the trading user is another user

TRADING_USER = "nobody"


def trading_user_host(host: Host) -> Path:
    """The host as on EC2: the workdir in the home of a trading user who is not root; returns that home."""
    pw = pwd.getpwnam(TRADING_USER)
    home = host.base / "home"
    (home / "projects").mkdir(parents=True)
    for path in (home, home / "projects"):
        os.chown(path, pw.pw_uid, pw.pw_gid)
        path.chmod(0o755)
    host.overrides.update(workdir=str(home / "projects" / "SimpleTrader"), owner={"user": TRADING_USER},
                          closure_script="")
    return home


def give(path: Path) -> None:
    """What the trading user plants is theirs."""
    pw = pwd.getpwnam(TRADING_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def test_a_state_dir_the_trading_user_can_rename_is_refused(host: Host, s3: Any, published: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """The proof of concept of issue 12: the state dir in the trading user's projects directory (the old
    default) is swapped for a link; the next sync and eod must not create or change anything there."""
    home = trading_user_host(host)
    outside = canary(tmp_path)
    state = host.workdir.parent / ".simpletrader"
    host.overrides["state_dir"] = str(state)
    first = host.run("sync")
    if state.exists():
        state.rename(state.with_name(".simpletrader-renamed"))
    state.symlink_to(outside)
    give(state)
    before = snapshot(outside)
    runs = [host.run("sync"), host.run("eod")]
    assert snapshot(outside) == before
    assert first.returncode != 0
    assert first.last == (f"sync: FAILED state dir {state} is inside {home}, which the trading user "
                          f"{TRADING_USER!r} can change (owned by {TRADING_USER}); use a directory only root "
                          "controls, e.g. /var/lib/simpletrader")
    assert all(run.returncode != 0 for run in runs)


def test_links_planted_by_the_trading_user_change_nothing_outside(host: Host, s3: Any, published: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    home = trading_user_host(host)
    outside = canary(tmp_path)
    first = host.run("sync")
    assert first.returncode == 0, first.stdout + first.stderr
    release = Path(os.path.realpath(host.workdir))
    assert release.parent == host.releases and release.stat().st_uid == pwd.getpwnam(TRADING_USER).pw_uid

    # In their release: the trade data, the ledger's file, the upload marker and a code directory become links.
    shutil.rmtree(release / "trade_logs", ignore_errors=True)
    (release / "trade_logs").symlink_to(outside)
    (release / "ledger").mkdir(exist_ok=True)
    (release / "ledger" / "ledger.csv").unlink(missing_ok=True)
    (release / "ledger" / "ledger.csv").symlink_to(outside / "precious.txt")
    (release / ".simpletrader-uploaded.json").unlink(missing_ok=True)
    (release / ".simpletrader-uploaded.json").symlink_to(outside / "precious.txt")
    shutil.rmtree(release / "src" / "setup")
    (release / "src" / "setup").symlink_to(outside)
    for path in (release / "trade_logs", release / "ledger" / "ledger.csv", release / ".simpletrader-uploaded.json",
                 release / "src" / "setup"):
        give(path)
    before = snapshot(outside)
    host.run("eod")
    host.run("sync")
    assert snapshot(outside) == before

    # Their projects directory becomes a link to the canary: the workdir symlink and its temporary name
    # would be made there.
    (home / "projects").rename(home / "projects-renamed")
    (home / "projects").symlink_to(outside)
    give(home / "projects")
    sync, eod = host.run("sync"), host.run("eod")
    assert snapshot(outside) == before
    assert sync.returncode != 0 and eod.returncode != 0
    assert sync.last == (f"sync: FAILED {home / 'projects'} is a symbolic link; the workdir "
                         f"{host.workdir} must be reached without following one")


def test_a_state_dir_others_can_change_is_refused(host: Host, tmp_path: Path) -> None:
    """Root's state dir must be root's alone, and so must every directory above it (a sticky one may be shared)."""
    state = host.state_dir

    def refusal() -> str:
        result = host.run("migrate")
        assert result.returncode != 0
        return result.last

    state.mkdir(mode=0o755)
    state.chmod(0o777)
    assert refusal() == (f"migrate: FAILED state dir {state} must be a directory owned by root and writable by "
                         "root only (it is owned by root, mode 0777); move it away, then run the command again")
    state.chmod(0o755)
    give(state)
    assert refusal().startswith(f"migrate: FAILED state dir {state} must be a directory owned by root and "
                                f"writable by root only (it is owned by {TRADING_USER}, mode 0755)")
    os.chown(state, 0, 0)
    (state / "venvs").mkdir()
    give(state / "venvs")
    assert refusal().startswith(f"migrate: FAILED state directory {state / 'venvs'} must be a directory owned by root")
    os.chown(state / "venvs", 0, 0)

    shared = host.base / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    host.overrides["state_dir"] = str(shared / "state")
    assert refusal() == (f"migrate: FAILED state dir {shared / 'state'} is inside {shared}, which other users can "
                         "change (mode 0777); use a directory only root controls, e.g. /var/lib/simpletrader")
    shared.chmod(0o1777)  # sticky, like /tmp: nobody else can rename root's state dir there
    assert host.run("migrate").last == "migrate: nothing to migrate"

    (host.base / "linked").symlink_to(state)
    host.overrides["state_dir"] = str(host.base / "linked")
    assert refusal() == (f"migrate: FAILED state dir {host.base / 'linked'} is a symbolic link; give the state "
                         "dir's real path")
