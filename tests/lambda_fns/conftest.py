"""Fixtures for the start/stop function tests (helpers in fnhelpers.py).

The tests share the session's emulator without resetting it per test: every
test makes its own instance, bucket, topic and queue (unique names), which
isolates them as well as a reset would, without paying the emulator's reset
and EC2 warm-up (several seconds) for each of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fnhelpers import Stack, new_stack, write_calendar

from devtools import localaws


@pytest.fixture
def calendar_file(tmp_path: Path) -> Path:
    return write_calendar(tmp_path / "calendar.json")


@pytest.fixture
def emulator(moto_server: localaws.MotoServer, monkeypatch: pytest.MonkeyPatch) -> localaws.MotoServer:
    """The session's emulator, with this test's environment pointing at it (no reset)."""
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def stack(emulator: localaws.MotoServer, calendar_file: Path) -> Stack:
    """A running trading host, a bucket with planted secrets, a topic with a queue subscribed."""
    return new_stack(calendar_file)
