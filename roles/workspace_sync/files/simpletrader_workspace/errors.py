"""The one exception the routine expects: reported as one line, no traceback."""

from __future__ import annotations

from typing import Any


class Failure(Exception):
    """An expected failure: reported as one line, no traceback.

    ``details`` are what the command still knows despite failing (an eod whose
    closure script failed still uploaded): they go into the result file.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details
