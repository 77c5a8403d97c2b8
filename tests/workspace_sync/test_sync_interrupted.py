"""The routine interrupted or raced: a killed sync, a second sync, a cron job holding the lock."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from example_release import CODE_DIR
from wshelpers import (
    Host,
)

# --------------------------------------------------------------------------- interruption and concurrency


def wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def downloading(host: Host) -> bool:
    """The sync has made its .partial release and downloaded the first object."""
    started = any(p.name.endswith(".partial") for p in host.release_dirs())
    return started and (host.state_dir / "staging.partial" / "code.tar.gz").exists()


def test_killed_mid_download_then_clean_rerun(host: Host, s3: Any, published: dict[str, Any]) -> None:
    result = host.spawned_result_path("sync")
    result.write_text("{}")  # an earlier run's: removed as the routine starts
    proc = host.spawn("sync", SIMPLETRADER_TEST_SLEEP_AFTER_OBJECT="30")
    try:
        wait_for(lambda: downloading(host))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert not result.exists(), "a run that never finished left a result"
    leftovers = host.release_dirs()
    assert leftovers and all(p.name.endswith(".partial") for p in leftovers)
    assert host.ready() is None and not host.workdir.exists()

    rerun = host.run("sync")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "removing leftover" in rerun.stdout
    dirs = host.release_dirs()
    assert len(dirs) == 1 and not dirs[0].name.endswith(".partial")
    assert not (host.state_dir / "staging.partial").exists()
    assert not [p for p in (host.state_dir / "wheelhouse").iterdir() if p.name.endswith(".partial")]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_while_building_the_venv(host: Host, s3: Any, published: dict[str, Any]) -> None:
    host.overrides["installer"] = "pip"  # python -m venv and pip: slow enough to be caught mid-build
    venv = host.state_dir / "venvs" / hashlib.sha256((CODE_DIR / "requirements.txt").read_bytes()).hexdigest()
    proc = subprocess.Popen(
        host.command("sync"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=host.env(),
        start_new_session=True,
    )
    pgid = proc.pid
    try:
        wait_for(lambda: (venv / "bin").is_dir())
        proc.kill()  # the routine only: its venv/pip child lives on
        proc.wait(timeout=30)
        assert group_alive(pgid), "the venv build finished before the test could look"
        # The orphaned build still holds the lock: a new sync must not race it.
        host.overrides["lock_wait_seconds"] = 0
        busy = host.run("sync")
        host.overrides["lock_wait_seconds"] = 1
        assert busy.returncode != 0 and "busy" in busy.last
        wait_for(lambda: not group_alive(pgid), timeout=120)
    finally:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    assert not (venv / ".simpletrader-complete").exists()
    rerun = host.run("sync")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"removing incomplete virtualenv {venv.name}" in rerun.stdout
    assert (venv / ".simpletrader-complete").exists()


def test_two_syncs_at_once(host: Host, s3: Any, published: dict[str, Any]) -> None:
    slow = host.spawn("sync", SIMPLETRADER_TEST_SLEEP_AFTER_OBJECT="1")
    try:
        wait_for(lambda: any(p.name.endswith(".partial") for p in host.release_dirs()))
        busy = host.run("sync")
        assert busy.returncode != 0
        assert busy.last.startswith("sync: FAILED busy: another simpletrader job holds the lock")
        eod_busy = host.run("eod")
        assert eod_busy.returncode != 0 and eod_busy.last.startswith("eod: FAILED busy")
        out, err = slow.communicate(timeout=120)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.communicate()
    assert slow.returncode == 0, out + err
    slow_result = json.loads(host.spawned_result_path("sync").read_text())
    assert slow_result["ok"] is True and slow_result["release"] == published["release"]
    assert busy.result is not None and busy.result["exit_code"] == 1
    dirs = host.release_dirs()
    assert len(dirs) == 1 and Path(os.path.realpath(host.workdir)) == dirs[0]
    assert (host.workdir / "src/setup/setup.py").is_file()


def test_lock_held_by_a_cron_job(host: Host, s3: Any, published: dict[str, Any]) -> None:
    import fcntl

    host.lock_file.touch()
    with open(host.lock_file) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = host.run("sync")
        status = host.run("status")
    assert result.returncode != 0 and "busy" in result.last
    assert "lock " in status.stdout and ": held" in status.stdout
    assert host.ready() is None
