"""``simpletrader-workspace sync|eod|status|migrate [--config FILE] [--result-json FILE]``: parse, dispatch, report.

Exit 0 only on success; the last line says how the command ended:
``<command>: <what happened>`` or ``<command>: FAILED <reason>`` (exit 1;
130 when interrupted). Expected failures print no traceback. With
``--result-json FILE`` the same ending is also written to FILE as one JSON
object, before the last line is printed (docs/CONTRACTS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from . import eod, migrate, status, sync
from .config import DEFAULT_CONFIG, Config, load_config
from .errors import Failure
from .lock import Lock
from .output import Outcome, discard_result, result_document, write_result
from .s3 import aws_errors, describe

COMMANDS: dict[str, Callable[[Config], Outcome]] = {
    "sync": sync.run, "eod": eod.run, "status": status.run, "migrate": migrate.run,
}


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="simpletrader-workspace", description="Sync, end-of-day upload and status of the workspace."
    )
    parser.add_argument("command", choices=tuple(COMMANDS))
    parser.add_argument("--config", default=os.environ.get("SIMPLETRADER_WORKSPACE_CONFIG", DEFAULT_CONFIG))
    parser.add_argument("--result-json", metavar="FILE", type=Path,
                        help="also write how the command ended to FILE, as one JSON object")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    # The trading user must be able to read what root writes (venvs, markers),
    # whatever umask the SSM agent or a shell passes down.
    os.umask(0o022)
    cmd = args.command
    if args.result_json is not None:
        try:
            discard_result(args.result_json)
        except OSError as exc:
            print(f"{cmd}: cannot remove the earlier result file {args.result_json}: {exc}", file=sys.stderr)
    exit_code, message, details = execute(cmd, args.config)
    last_line = f"{cmd}: {message}"
    if args.result_json is not None:
        try:
            write_result(args.result_json, result_document(cmd, exit_code, last_line, details))
        except OSError as exc:
            print(f"{cmd}: cannot write the result file {args.result_json}: {exc}", file=sys.stderr)
    print(last_line, flush=True)
    return exit_code


def execute(cmd: str, config_path: str) -> tuple[int, str, dict[str, Any]]:
    """Run one command under the lock (status takes none): (exit code, its last line's text, result details)."""
    lock: Optional[Lock] = None
    try:
        cfg = load_config(config_path)
        if cmd != "status":
            lock = Lock(cfg.lock_file)
            lock.acquire(cfg.lock_wait)
        outcome = COMMANDS[cmd](cfg)
    except Failure as exc:
        return 1, f"FAILED {exc}", exc.details
    except KeyboardInterrupt:
        return 130, "FAILED interrupted", {}
    except Exception as exc:  # noqa: BLE001 - report anything unexpected in one line, details on stderr
        traceback.print_exc(file=sys.stderr)
        extra = ""
        try:
            if isinstance(exc, aws_errors()):
                extra = " (AWS)"
        except ImportError:
            pass
        return 1, f"FAILED unexpected error{extra}: {describe(exc)}", {}
    finally:
        if lock is not None:
            lock.release()
    return 0, outcome.message, outcome.details
