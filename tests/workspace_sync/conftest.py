"""Fixtures for the workspace routine's tests (helpers: wshelpers.py; wheelhouse and s3: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from example_release import do_publish
from wshelpers import Host


@pytest.fixture
def published(s3: Any, wheelhouse: Path) -> dict[str, Any]:
    return do_publish(s3, wheelhouse)


@pytest.fixture
def host(moto: Any, tmp_path: Path) -> Iterator[Host]:
    (tmp_path / "lock").mkdir()
    yield Host(tmp_path, moto.endpoint)
