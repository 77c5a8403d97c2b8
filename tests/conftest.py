"""Shared fixtures: the local AWS emulator, the root/test-host gate, and the example release's bucket.

``moto`` fixture: one moto_server for the whole session, reset before each
test that asks for it; the test's environment points at it through
``AWS_ENDPOINT_URL`` with fake credentials, so the product code under test
runs with no code path special to the emulator.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from example_release import BUCKET, CODE_DIR  # noqa: E402

from devtools import localaws  # noqa: E402
from provision.wheelhouse import build_wheelhouse  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root (network namespaces, mounts, systemd-nspawn)")
    config.addinivalue_line("markers", "testhost: boots a Debian 11 test host")
    config.addinivalue_line("markers", "scan: runs the security scanners of .venv-scan/ (tests/security)")


def needs_root_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, overlay mounts, systemd-nspawn); CI runs it as root"
    for tool in ("systemd-nspawn", "debootstrap", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install systemd-container debootstrap iproute2); .ci/run installs it"
    return None


@pytest.hookimpl(trylast=True)  # after pytest-xdist has named each item's group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that share a module's host or stack carry an xdist_group mark; under
    # --dist loadgroup xdist appends the group to their node id, or it would
    # spread them over workers, each booting the same host name at once.
    if config.getoption("dist", "no") == "no" and getattr(config.option, "loadgroup", False):
        lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:
            raise pytest.UsageError(f"--dist loadgroup did not group {lost[0]} (and {len(lost) - 1} more): this "
                                    "pytest and pytest-xdist do not work together; install requirements-dev.txt")
    reason = needs_root_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "root" in item.keywords or "testhost" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localaws.MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = localaws.start(bind=os.environ.get("ST_MOTO_BIND", "127.0.0.1"), log_path=log)
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server: localaws.MotoServer, monkeypatch: pytest.MonkeyPatch) -> localaws.MotoServer:
    """A clean emulator, with this test's environment pointing at it."""
    moto_server.reset()
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels for the example requirements, built once (pip download for Python 3.9)."""
    dest = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(CODE_DIR / "requirements.txt", dest, log=lambda _m: None)
    return dest


@pytest.fixture
def s3(moto: localaws.MotoServer) -> Any:
    """An S3 client of the emulator, with the publish tests' empty bucket (example_release.BUCKET)."""
    client = boto3.client("s3", region_name="ap-south-1")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    return client
