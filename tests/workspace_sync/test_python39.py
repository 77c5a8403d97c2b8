"""The routine, from the wheel the role installs, under a real Python 3.9 with the tool venv's boto3 pin.

The test hosts' cached Debian 11 root file system has python3.9 (3.9.2, the
oldest 3.9 a host is likely to have). Each run mounts an overlay of it in a
private mount namespace, binds the test's directory in at the same path and
runs the routine there with ``chroot``, sharing this machine's network so the
emulator is reachable. python3.9-venv (ensurepip, which the python39 role
installs on a real host) comes through the test hosts' apt proxy; then a
whole day runs on 3.9: sync, the example trading job in the synced venv,
eod with the closure script, a second sync reusing the venv, status. Without
the proxy the sync is checked up to the virtualenv step and the test skips.

Needs root and the cached root file system (``tests/hosts/testhost rootfs``
builds it); skips otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from example_release import BUCKET
from wshelpers import ROOT, ROUTINE_PROJECT, Host, assert_no_secrets, exchange_today

from provision.wheel import build_wheel

TOOL_BOTO3 = "1.42.97"  # docs/CONTRACTS.md: the newest boto3 that supports Python 3.9


def run_testhost(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """One ``tests/hosts/testhost`` command, its output captured."""
    return subprocess.run([sys.executable, str(ROOT / "tests" / "hosts" / "testhost"), command],
                          capture_output=True, text=True, timeout=timeout, check=False)


def find_rootfs() -> Path | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("chroot") is None:
        return None
    proc = run_testhost("rootfs", timeout=900)
    path = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    if path is None or not (path / "usr" / "bin" / "python3.9").exists():
        return None
    return path


pytestmark = pytest.mark.xdist_group("python39-host")  # the module's host is shared


@pytest.fixture(scope="module")
def rootfs() -> Path:
    path = find_rootfs()
    if path is None:
        pytest.skip("needs root, unshare/chroot and the test hosts' Debian 11 root file system")
    return path


@pytest.fixture(scope="module")
def tool_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tool venv's packages (roles/workspace_sync defaults) and the routine's wheel, built as the role
    builds it, for 3.9, unpacked into a site dir."""
    from devtools.wheels import tool_wheelhouse
    from provision.errors import PublishError

    try:
        wheels = tool_wheelhouse()  # the role's pinned tool packages, built once with publish's builder
    except PublishError as exc:
        pytest.skip(f"cannot download the host tool wheels for Python 3.9: {str(exc)[-300:]}")
    site = tmp_path_factory.mktemp("tool-site")
    routine = build_wheel(ROUTINE_PROJECT, tmp_path_factory.mktemp("routine-wheel"))
    for wheel in [*wheels.glob("*.whl"), routine]:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    return site


def run39(
    host: Host, rootfs: Path, site: Path, *args: str, as_shell: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run python3.9 ARGS (or, with as_shell=True, ``sh -c ARGS[0]``) in the host's Debian 11 overlay.

    The overlay's upper layer persists for the test (next to its directory),
    so a package installed by one call is there for the next.
    """
    host.write_config()
    base = host.base
    ov = base.parent / (base.name + "-overlay")
    for sub in ("upper", "work", "merged"):
        (ov / sub).mkdir(parents=True, exist_ok=True)
    script = r"""
set -e
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$OV/upper,workdir=$OV/work" "$OV/merged"
for d in "$BASE" "$SITE"; do mkdir -p "$OV/merged$d"; mount --bind "$d" "$OV/merged$d"; done
mount --rbind /dev "$OV/merged/dev"
mount -t proc proc "$OV/merged/proc"
if [ "$SHELL_MODE" = 1 ]; then
  exec chroot "$OV/merged" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    /bin/sh -c "$1"
fi
exec chroot "$OV/merged" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root PYTHONPATH="$SITE" \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  /usr/bin/python3.9 "$@"
"""
    env = dict(
        os.environ,
        OV=str(ov),
        ROOTFS=str(rootfs),
        BASE=str(base),
        SITE=str(site),
        SHELL_MODE=str(int(as_shell)),
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def install_venv_support(host: Host, rootfs: Path, site: Path) -> bool:
    """python3.9-venv (ensurepip) through the test hosts' apt proxy, as roles/python39 installs it."""
    proxy = run_testhost("proxy", timeout=120)
    if proxy.returncode != 0:
        return False
    apt = "apt-get -q -o Acquire::http::Proxy=http://127.0.0.1:3152"
    proc = run39(
        host,
        rootfs,
        site,
        f"{apt} update && {apt} -y install --no-install-recommends python3.9-venv",
        as_shell=True,
    )
    return proc.returncode == 0


def py39_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert_no_secrets(proc.stdout + proc.stderr)
    return proc.stdout.strip().splitlines()


def py39_result(host: Host, proc: subprocess.CompletedProcess[str], cmd: str) -> dict[str, Any]:
    """The run's --result-json document, checked against its last line and exit code."""
    result: dict[str, Any] = json.loads((host.base / f"result-{cmd}.json").read_text())
    assert result["message"] == py39_lines(proc)[-1] and result["exit_code"] == proc.returncode
    return result


def test_routine_runs_on_python39(
    rootfs: Path, tool_site: Path, host: Host, s3: Any, published: dict[str, Any]
) -> None:
    version = run39(
        host, rootfs, tool_site, "-c", "import sys, boto3; print(sys.version_info[:2], boto3.__version__)"
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"(3, 9) {TOOL_BOTO3}"
    cmd = ["-m", "simpletrader_workspace"]
    host.overrides["python"] = "/usr/bin/python3.9"

    def config(name: str) -> list[str]:
        return ["--config", str(host.config_path), "--result-json", str(host.base / f"result-{name}.json")]

    today = exchange_today()

    if not install_venv_support(host, rootfs, tool_site):
        # Without the apt proxy: sync runs up to the virtualenv, which needs ensurepip.
        sync = run39(host, rootfs, tool_site, *cmd, "sync", *config("sync"))
        assert sync.returncode == 1, sync.stdout + sync.stderr
        assert "downloaded and verified 5 objects" in sync.stdout
        assert py39_result(host, sync, "sync")["message"].startswith("sync: FAILED creating the virtualenv failed")
        assert not [p for p in host.release_dirs() if p.name.endswith(".partial")]
        assert host.ready() is None
        pytest.skip(
            "python3.9-venv could not be installed through the apt proxy; sync checked up to the venv"
        )

    sync = run39(host, rootfs, tool_site, *cmd, "sync", *config("sync"))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    ready = host.ready()
    assert ready is not None and ready["date"] == today
    result = py39_result(host, sync, "sync")
    assert (result["release"], result["venv"]) == (published["release"], ready["venv"])
    job = run39(
        host,
        rootfs,
        tool_site,
        "-c",
        f"import subprocess, os; os.chdir('{host.workdir}'); "
        f"subprocess.run(['{ready['python']}', 'src/setup/setup.py'], check=True, "
        f"env={{'PYTHONPATH': '{host.workdir}/src', 'PATH': '/usr/bin:/bin'}})",
    )
    assert job.returncode == 0, job.stdout + job.stderr
    assert "six 1.16.0" in job.stdout

    eod = run39(host, rootfs, tool_site, *cmd, "eod", *config("eod"))
    assert eod.returncode == 0, eod.stdout + eod.stderr
    result = py39_result(host, eod, "eod")
    assert (result["uploaded"], result["already_uploaded"], result["date"]) == (3, 0, today)
    assert b"trades 3" in s3.get_object(Bucket=BUCKET, Key=f"logs/{today}/summary.txt")["Body"].read()

    again = run39(host, rootfs, tool_site, *cmd, "sync", *config("sync"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert py39_result(host, again, "sync")["venv_reused"] is True
    status = run39(host, rootfs, tool_site, *cmd, "status", *config("status"))
    assert status.returncode == 0
    result = py39_result(host, status, "status")
    assert (result["date"], result["fresh"]) == (today, True)
