"""A host laid out by earlier versions (state in ``<parent of workdir>/.simpletrader``) moves to root's state dir.

The old layout is made by the routine itself, configured as the role used to
configure it (``state_dir`` in the projects directory); then the config gets
the new ``state_dir`` and the old one is migrated (docs/CONTRACTS.md,
"Moving the state of earlier versions").
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from example_release import BUCKET, CODE_DIR, body
from wshelpers import Host, exchange_today


def files(root: Path) -> dict[str, Any]:
    """Every entry under ``root`` (not following links): files by content, links by target, directories."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel:
            continue
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def old_layout(host: Host) -> Path:
    """Sync as earlier versions did (state beside the workdir), trade today without an end of day; the old dir."""
    old = host.workdir.parent / ".simpletrader"
    host.overrides["state_dir"] = str(old)
    first = host.run("sync")
    assert first.returncode == 0, first.stdout + first.stderr
    assert host.run("sync").returncode == 0  # a second release: the first stays (keep_releases=2)
    day = host.workdir / "trade_logs" / exchange_today()
    day.mkdir(parents=True)
    (day / "trades.csv").write_text("not uploaded yet\n")
    (old / "logs").mkdir()
    (old / "logs" / f"trading-{exchange_today()}.log").write_text("job log\n")
    del host.overrides["state_dir"]
    return old


def test_an_old_host_migrates_with_nothing_lost(host: Host, s3: Any, published: dict[str, Any]) -> None:
    old = old_layout(host)
    releases_before = files(old / "releases")
    ready_before = json.loads((old / "ready.json").read_text())
    current = Path(os.readlink(host.workdir)).name

    result = host.run("migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.last == (f"migrate: moved 2 release(s), the ready marker, 1 job log(s) from {old} "
                           f"to {host.state_dir}")
    assert not old.exists()
    # Every release, its trade data and markers, as they were; the workdir points at the moved current one.
    assert files(host.releases) == releases_before
    assert os.readlink(host.workdir) == str(host.releases / current)
    assert (host.workdir / "trade_logs" / exchange_today() / "trades.csv").read_text() == "not uploaded yet\n"
    assert (host.state_dir / "logs" / f"trading-{exchange_today()}.log").read_text() == "job log\n"
    # The virtualenv was rebuilt in root's state dir; the ready marker points at it and still says today.
    ready = host.ready()
    assert ready is not None
    venv = host.state_dir / "venvs" / ready_before["venv"]
    assert ready == dict(ready_before, python=str(venv / "bin" / "python"), release_dir=str(host.releases / current))
    six = subprocess.run([ready["python"], "-c", "import six; print(six.__version__)"], capture_output=True,
                         text=True, check=True)
    assert six.stdout.strip() == "1.16.0"
    host.run_job("src/setup/pre_market_setup.py")

    # Running it again changes nothing.
    state_before = files(host.state_dir)
    again = host.run("migrate")
    assert again.returncode == 0 and again.last == "migrate: nothing to migrate"
    assert files(host.state_dir) == state_before

    # The day's trade data is still to upload, and the end of day does it.
    assert "NOT uploaded" in host.run("status").stdout
    eod = host.run("eod")
    assert eod.returncode == 0, eod.stdout + eod.stderr
    assert body(s3, f"logs/{exchange_today()}/trades.csv") == b"not uploaded yet\n"


def test_the_first_sync_migrates_too(host: Host, s3: Any, published: dict[str, Any]) -> None:
    old = old_layout(host)
    sync = host.run("sync")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert f"sync: moved 2 release(s), the ready marker, 1 job log(s) from {old} to {host.state_dir}" in sync.stdout
    assert not old.exists()
    assert Path(os.path.realpath(host.workdir)).parent == host.releases
    # The unconfirmed trade data of the migrated release was uploaded before anything else.
    assert body(s3, f"logs/{exchange_today()}/trades.csv") == b"not uploaded yet\n"


def test_an_interrupted_migration_completes_on_the_next_run(host: Host, s3: Any, published: dict[str, Any]) -> None:
    old = old_layout(host)
    releases_before = files(old / "releases")
    host.overrides["installer"] = "pip"  # python -m venv and pip: slow enough to be caught mid-build
    venv = host.state_dir / "venvs" / hashlib.sha256((CODE_DIR / "requirements.txt").read_bytes()).hexdigest()
    proc = subprocess.Popen(host.command("migrate"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=host.env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (venv / "bin").is_dir():
            assert proc.poll() is None and time.monotonic() < deadline, "the migration ended before the test looked"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # Killed while rebuilding the virtualenv: the releases had moved, nothing is lost.
    assert files(host.releases) == releases_before
    assert not (venv / ".simpletrader-complete").exists()

    rerun = host.run("migrate")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.last == (f"migrate: moved 0 release(s), the ready marker, 1 job log(s) from {old} "
                          f"to {host.state_dir}")
    assert not old.exists() and (venv / ".simpletrader-complete").exists()
    assert files(host.releases) == releases_before
    ready = host.ready()
    assert ready is not None and ready["python"] == str(venv / "bin" / "python")


def test_the_migration_follows_no_link_in_the_old_state_dir(host: Host, s3: Any, published: dict[str, Any],
                                                            tmp_path: Path) -> None:
    """The old state dir was the trading user's to tamper with: links planted there are removed, not followed."""
    old = old_layout(host)
    outside = tmp_path / "canary"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious\n")
    (outside / "keep").mkdir()
    wheel = next(p.name for p in (old / "wheelhouse").iterdir())
    planted = {
        old / "releases" / "planted": outside,
        old / "venvs" / ("0" * 64): outside,
        old / "wheelhouse" / wheel: outside / "precious.txt",
        old / "logs" / "planted.log": outside / "precious.txt",
        old / "staging.partial": outside / "keep",
    }
    (old / "wheelhouse" / wheel).unlink()
    if (old / "uv-cache").exists():
        subprocess.run(["rm", "-rf", str(old / "uv-cache")], check=True)
    planted[old / "uv-cache"] = outside / "keep"
    for link, target in planted.items():
        link.symlink_to(target)
    before = files(outside)

    result = host.run("migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert files(outside) == before
    assert not old.exists()
    assert not [p for p in host.releases.iterdir() if p.is_symlink()]
    assert not (host.state_dir / "logs" / "planted.log").exists()
    # The wheel came from the bucket instead, and is the manifest's.
    wheel_obj = next(o for o in published["objects"] if o["role"] == "wheel")
    assert hashlib.sha256((host.state_dir / "wheelhouse" / wheel).read_bytes()).hexdigest() == wheel_obj["sha256"]
    assert s3.head_object(Bucket=BUCKET, Key=wheel_obj["key"])


def test_an_old_virtualenv_stays_until_the_new_one_is_built(host: Host, s3: Any, published: dict[str, Any]) -> None:
    """The bucket has no manifest at the time of the move: the virtualenv cannot be rebuilt, so the old one and
    the ready marker stay where they were; once a release is published, the next sync finishes the move."""
    old = old_layout(host)
    ready_before = json.loads((old / "ready.json").read_text())
    manifest = body(s3, "deploy/manifest.json")
    s3.delete_object(Bucket=BUCKET, Key="deploy/manifest.json")
    result = host.run("migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"WARNING: could not rebuild the virtualenv {ready_before['venv'][:12]}" in result.stdout
    assert result.last.endswith(f"; {old} is kept")
    assert sorted(p.name for p in old.iterdir()) == ["ready.json", "venvs"]
    assert (old / "venvs" / ready_before["venv"] / ".simpletrader-complete").is_file()
    assert host.ready() is None  # the jobs wait for the next sync
    assert len(list(host.releases.iterdir())) == 2

    s3.put_object(Bucket=BUCKET, Key="deploy/manifest.json", Body=manifest)
    sync = host.run("sync")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert not old.exists()
    assert body(s3, f"logs/{exchange_today()}/trades.csv") == b"not uploaded yet\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the old directory is handed to another user")
def test_a_requirements_txt_planted_in_the_old_directory_is_not_installed_as_root(
        host: Host, s3: Any, published: dict[str, Any]) -> None:
    """The trading user owns the projects directory, so it can make an old state dir at any time, with a
    release whose requirements.txt names a source tree of its own: its build backend would run as root."""
    user = pwd.getpwnam("nobody")
    home = host.base / "home"
    (home / "projects").mkdir(parents=True)
    host.overrides.update(workdir=str(home / "projects" / "SimpleTrader"), owner={"user": "nobody"},
                          closure_script="")
    first = host.run("sync")
    assert first.returncode == 0, first.stdout + first.stderr
    # What the trading user can do in its own directories.
    proof = home / "built-as"
    package = home / "planted"
    package.mkdir()
    (package / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                                            'backend-path = ["."]\n[project]\nname = "planted"\nversion = "1"\n')
    (package / "backend.py").write_text(f"import os\nopen({str(proof)!r}, 'w').write(str(os.getuid()))\n")
    release = home / "projects" / ".simpletrader" / "releases" / "planted"
    release.mkdir(parents=True)
    requirements = f"{package}\n".encode()
    (release / "requirements.txt").write_bytes(requirements)
    (release / ".simpletrader-release.json").write_text(
        json.dumps({"venv": hashlib.sha256(requirements).hexdigest()}))
    host.workdir.unlink()
    host.workdir.symlink_to(release)
    for path in [home, *home.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)

    eod = host.run("eod")
    assert not proof.exists(), f"the planted package was built, as uid {proof.read_text()}"
    assert "is not the one the bucket's manifest lists" in eod.stdout
    assert not list((host.state_dir / "venvs").glob(hashlib.sha256(requirements).hexdigest() + "*"))
