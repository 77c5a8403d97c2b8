"""The one exception the routine expects: reported as one line, no traceback."""

from __future__ import annotations


class Failure(Exception):
    """An expected failure: reported as one line, no traceback."""
