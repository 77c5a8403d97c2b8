"""The routine under a real Python 3.9 with the tool venv's boto3 pin.

The test hosts' cached Debian 11 root file system has python3.9 (3.9.2, the
oldest 3.9 a host is likely to have). Each run mounts an overlay of it in a
private mount namespace, binds the test's directory in at the same path and
runs the routine there with ``chroot``, sharing this machine's network so the
emulator is reachable. That root file system has no ``ensurepip`` (the
python39 role installs python3.9-venv), so the sync here stops at the
virtualenv step: everything before it, eod and status run for real.

Needs root and the cached root file system (``tests/hosts/testhost rootfs``
builds it); skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from wshelpers import BUCKET, ROOT, ROUTINE, Host, assert_no_secrets, exchange_today

TOOL_BOTO3 = "1.42.97"  # docs/CONTRACTS.md: the newest boto3 that supports Python 3.9


def find_rootfs() -> Path | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("chroot") is None:
        return None
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "hosts" / "testhost"), "rootfs"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    path = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    if path is None or not (path / "usr" / "bin" / "python3.9").exists():
        return None
    return path


@pytest.fixture(scope="module")
def rootfs() -> Path:
    path = find_rootfs()
    if path is None:
        pytest.skip("needs root, unshare/chroot and the test hosts' Debian 11 root file system")
    return path


@pytest.fixture(scope="module")
def tool_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """boto3 at the tool venv's pin, as pure-Python wheels for 3.9, unpacked into a site dir."""
    wheels = tmp_path_factory.mktemp("tool-wheels")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--only-binary=:all:",
            "--python-version",
            "3.9",
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            str(wheels),
            f"boto3=={TOOL_BOTO3}",
            f"botocore=={TOOL_BOTO3}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot download boto3 {TOOL_BOTO3} for Python 3.9: {proc.stdout[-300:]}")
    site = tmp_path_factory.mktemp("tool-site")
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    return site


def run39(host: Host, rootfs: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    host.write_config()
    base = host.base
    routine = base / "simpletrader-workspace"
    shutil.copy(ROUTINE, routine)
    ov = base / ".overlay"
    ov.mkdir(exist_ok=True)
    script = r"""
set -e
mount -t tmpfs tmpfs "$OV"
mkdir "$OV/upper" "$OV/work" "$OV/merged"
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$OV/upper,workdir=$OV/work" "$OV/merged"
for d in "$BASE" "$SITE"; do mkdir -p "$OV/merged$d"; mount --bind "$d" "$OV/merged$d"; done
mount --rbind /dev "$OV/merged/dev"
mount -t proc proc "$OV/merged/proc"
exec chroot "$OV/merged" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root PYTHONPATH="$SITE" \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  /usr/bin/python3.9 "$@"
"""
    env = dict(os.environ, OV=str(ov), ROOTFS=str(rootfs), BASE=str(base), SITE=str(site))
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_routine_runs_on_python39(
    rootfs: Path, tool_site: Path, host: Host, s3: Any, published: dict[str, Any]
) -> None:
    version = run39(
        host, rootfs, tool_site, "-c", "import sys, boto3; print(sys.version_info[:2], boto3.__version__)"
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"(3, 9) {TOOL_BOTO3}"
    cmd = [str(host.base / "simpletrader-workspace")]
    host.overrides["python"] = "/usr/bin/python3.9"
    config = ["--config", str(host.config_path)]

    # sync: rescue, manifest, download + verify, extraction and secrets all run on 3.9; the venv step
    # fails here only because this root file system lacks ensurepip.
    sync = run39(host, rootfs, tool_site, *cmd, "sync", *config)
    assert_no_secrets(sync.stdout + sync.stderr)
    assert sync.returncode == 1, sync.stdout + sync.stderr
    assert "downloaded and verified 5 objects" in sync.stdout
    assert "extracted" in sync.stdout
    assert sync.stdout.strip().splitlines()[-1].startswith("sync: FAILED creating the virtualenv failed")
    assert not [p for p in host.release_dirs() if p.name.endswith(".partial")]
    assert host.ready() is None

    # eod and status on a plain (CDK-era) workdir, with the closure script.
    today = exchange_today()
    day = host.workdir / "trade_logs" / today
    day.mkdir(parents=True)
    (day / "trades.csv").write_text("t\n")
    (host.workdir / "src" / "setup").mkdir(parents=True)
    (host.workdir / "src" / "setup" / "closure.py").write_text(
        f"open('{day}/summary.txt', 'w').write('done\\n')\n"
    )
    eod = run39(host, rootfs, tool_site, *cmd, "eod", *config)
    assert eod.returncode == 0, eod.stdout + eod.stderr
    assert eod.stdout.strip().splitlines()[-1] == f"eod: uploaded 2 files (logs/{today}/, ledger/)"
    got = s3.get_object(Bucket=BUCKET, Key=f"logs/{today}/summary.txt")["Body"].read()
    assert got == b"done\n"
    status = run39(host, rootfs, tool_site, *cmd, "status", *config)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "plain directory" in status.stdout
