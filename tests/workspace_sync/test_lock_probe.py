"""`status` says whether the job lock is held without ever taking it.

Taking it even for an instant would make a cron job's `flock -n` that starts
in that instant exit 75, and the job would skip its run.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from simpletrader_workspace import lock as lock_module
from simpletrader_workspace.lock import Lock


def _held_by_child(path: Path) -> subprocess.Popen[bytes]:
    """A cron job's stand-in: another process holding the flock until killed."""
    child = subprocess.Popen([sys.executable, "-c",
                              "import fcntl, sys, time\n"
                              f"fh = open({str(path)!r})\n"
                              "fcntl.flock(fh, fcntl.LOCK_EX)\n"
                              "print('held', flush=True)\n"
                              "time.sleep(60)\n"],
                             stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"held\n"
    return child


def test_the_probe_never_takes_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "simpletrader.lock"
    path.touch()
    taken: list[int] = []

    def flock(fd: int, op: int) -> None:
        taken.append(op)
        raise AssertionError("the probe took the lock")

    monkeypatch.setattr(lock_module.fcntl, "flock", flock)
    assert Lock(path).probe() == "free"
    assert taken == []


def test_the_probe_sees_another_process_holding_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "simpletrader.lock"
    path.touch()
    other = tmp_path / "other.lock"
    other.touch()
    child = _held_by_child(path)
    try:
        assert Lock(path).probe() == "held"
        assert Lock(other).probe() == "free"  # a lock on another file is not this one
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 5
    while Lock(path).probe() != "free" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Lock(path).probe() == "free"


def test_a_blocked_waiter_does_not_hold_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "simpletrader.lock"
    path.touch()
    st = os.stat(path)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    proc_locks = tmp_path / "locks"
    proc_locks.write_text(f"1: -> FLOCK  ADVISORY  WRITE 4242 {ident} 0 EOF\n"
                          f"2: POSIX  ADVISORY  WRITE 4243 {ident} 0 EOF\n")
    assert Lock(path).probe(proc_locks) == "free"
    proc_locks.write_text(f"1: FLOCK  ADVISORY  WRITE 4242 {ident} 0 EOF\n"
                          f"1: -> FLOCK  ADVISORY  WRITE 4244 {ident} 0 EOF\n")
    assert Lock(path).probe(proc_locks) == "held"


def test_an_unreadable_lock_list_is_said_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "simpletrader.lock"
    path.touch()
    assert Lock(path).probe(tmp_path / "missing").startswith("unknown (cannot read ")
    assert Lock(tmp_path / "absent.lock").probe() == "free (no lock file yet)"


def test_the_lock_itself_still_excludes(tmp_path: Path) -> None:
    path = tmp_path / "simpletrader.lock"
    path.touch()
    held = Lock(path)
    held.acquire(wait=0)
    try:
        with open(path) as fh:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert Lock(path).probe() == "held"
    finally:
        held.release()
