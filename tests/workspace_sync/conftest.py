"""Fixtures for the workspace routine and publish tests (helpers: wshelpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from wshelpers import BUCKET, CODE_DIR, Host, do_publish

from provision.publish import build_wheelhouse


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels for the example requirements, built once (pip download for Python 3.9)."""
    dest = tmp_path_factory.mktemp("wheelhouse")
    build_wheelhouse(CODE_DIR / "requirements.txt", dest, log=lambda _m: None)
    return dest


@pytest.fixture
def s3(moto: Any) -> Any:
    client = boto3.client("s3", region_name="ap-south-1")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    return client


@pytest.fixture
def published(s3: Any, wheelhouse: Path) -> dict[str, Any]:
    return do_publish(s3, wheelhouse)


@pytest.fixture
def host(moto: Any, tmp_path: Path) -> Iterator[Host]:
    (tmp_path / "lock").mkdir()
    yield Host(tmp_path, moto.endpoint)
