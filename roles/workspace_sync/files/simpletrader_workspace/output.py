"""What the routine tells its caller: a line per step, the last line, and the result file.

Every line is ``<command>: <text>``, flushed at once (SSM and the benchmarks
read them as they come). The last line says how the command ended; the
Lambdas quote it. ``--result-json FILE`` adds the same ending as one JSON
object (docs/CONTRACTS.md, "Host routines"), for programs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fsutil import write_atomic

RESULT_VERSION = 1


def say(cmd: str, message: str) -> None:
    print(f"{cmd}: {message}", flush=True)


@dataclass
class Outcome:
    """How a command ended well: the text of its last line, and the facts behind it for the result file."""

    message: str
    details: dict[str, Any] = field(default_factory=dict)


def result_document(cmd: str, exit_code: int, last_line: str, details: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = dict(details)
    doc.update(version=RESULT_VERSION, command=cmd, ok=exit_code == 0, exit_code=exit_code, message=last_line)
    return doc


def discard_result(path: Path) -> None:
    """Remove an earlier run's result file, so that a run that never finishes leaves none."""
    try:
        os.unlink(str(path))
    except FileNotFoundError:
        pass


def write_result(path: Path, doc: dict[str, Any]) -> None:
    """The result file: one JSON object on one line, written atomically (mode 0644)."""
    write_atomic(path, (json.dumps(doc, sort_keys=True) + "\n").encode(), 0o644)
