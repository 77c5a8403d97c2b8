"""Fixtures for the provision tests (helpers live in provhelpers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from provhelpers import ROOT, Runner, base_config, write_config


@pytest.fixture
def stack_config(tmp_path: Path) -> Path:
    raw = base_config()
    # Artifacts relative to the config file: point them at the repository's example.
    for k, v in raw["artifacts"].items():
        raw["artifacts"][k] = str(ROOT / v)
    return write_config(tmp_path / "stack.yml", raw)


@pytest.fixture
def run(moto: Any, stack_config: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.delenv("s3_bucket_suffix", raising=False)
    monkeypatch.delenv("S3_BUCKET_SUFFIX", raising=False)
    return Runner(stack_config)
