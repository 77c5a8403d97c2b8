"""Timestamps in the formats the markers use (UTC)."""

from __future__ import annotations

import datetime as _dt


def utc_now() -> str:
    """Now, as the markers record it: ``2026-11-03T03:15:00Z``."""
    return iso_utc(_dt.datetime.now(_dt.timezone.utc))


def utc_stamp() -> str:
    """Now, for directory names: ``20261103T031500123456Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def iso_utc(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str) -> _dt.datetime:
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
