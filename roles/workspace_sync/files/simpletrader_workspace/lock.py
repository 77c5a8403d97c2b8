"""The one lock shared by sync, eod and the cron jobs (flock(2) on a root-owned file)."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Optional

from .errors import Failure

# The lock's file descriptor while held. Children that write into the state
# directory (venv, pip) inherit it, so if this process is killed the lock stays
# held until they have exited too, and the next sync never races them.
HELD_LOCK_FDS: list[int] = []


class Lock:
    """The one lock shared by sync, eod and the cron jobs (flock(2))."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: Optional[int] = None

    def _open(self) -> int:
        """Open the lock file read-only (flock needs no more), creating it if missing.

        The file stays owned by whoever made it (root, via tmpfiles or here): in
        a sticky world-writable directory such as /run/lock, the kernel's
        protected_regular rule refuses O_CREAT opens of a file owned by someone
        else than the opener or the directory's owner, so a root-owned file is
        the one both root (this routine) and ec2-user (flock in the cron jobs)
        can open.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(str(self.path), os.O_RDONLY)
        except FileNotFoundError:
            pass
        try:
            return os.open(str(self.path), os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # created by a cron job's flock in between
            return os.open(str(self.path), os.O_RDONLY)

    def acquire(self, wait: int) -> None:
        fd = self._open()
        deadline = time.monotonic() + max(0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                HELD_LOCK_FDS[:] = [fd]
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                raise Failure(
                    f"busy: another simpletrader job holds the lock {self.path} (waited {wait}s); "
                    "try again when it has finished"
                )
            time.sleep(0.5)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
            HELD_LOCK_FDS.clear()

    def probe(self, proc_locks: Path = Path("/proc/locks")) -> str:
        """Say whether the lock is held, without taking it.

        Taking it even for an instant (flock LOCK_NB) would make a cron job's
        `flock -n` starting in that instant exit 75 and skip its run, so the
        kernel's own list of held locks is read instead: a line per lock, with
        the device as hex major:minor and the inode; blocked waiters ("->") do
        not hold it. (In a container's own pid namespace the kernel lists only
        the locks whose taker it can see there: one held on by the child of a
        process that died would read "free". On the host, the initial
        namespace, every lock is listed.)
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "free (no lock file yet)"
        wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        try:
            lines = proc_locks.read_text().splitlines()
        except OSError as exc:
            return f"unknown (cannot read {proc_locks}: {exc.strerror})"
        for line in lines:
            fields = line.split()
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                return "held"
        return "free"
