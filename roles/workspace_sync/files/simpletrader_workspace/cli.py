"""``simpletrader-workspace sync|eod|status [--config FILE]``: parse, dispatch, report.

Exit 0 only on success; the last line says how the command ended:
``<command>: <what happened>`` or ``<command>: FAILED <reason>`` (exit 1;
130 when interrupted). Expected failures print no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Optional

from . import eod, status, sync
from .config import DEFAULT_CONFIG, Config, load_config
from .errors import Failure
from .lock import Lock
from .s3 import aws_errors, describe

COMMANDS: dict[str, Callable[[Config], str]] = {"sync": sync.run, "eod": eod.run, "status": status.run}


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="simpletrader-workspace", description="Sync, end-of-day upload and status of the workspace."
    )
    parser.add_argument("command", choices=tuple(COMMANDS))
    parser.add_argument("--config", default=os.environ.get("SIMPLETRADER_WORKSPACE_CONFIG", DEFAULT_CONFIG))
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    # The trading user must be able to read what root writes (venvs, markers),
    # whatever umask the SSM agent or a shell passes down.
    os.umask(0o022)
    exit_code, message = execute(args.command, args.config)
    print(f"{args.command}: {message}", flush=True)
    return exit_code


def execute(cmd: str, config_path: str) -> tuple[int, str]:
    """Run one command under the lock (status takes none): (exit code, its last line's text)."""
    lock: Optional[Lock] = None
    try:
        cfg = load_config(config_path)
        if cmd != "status":
            lock = Lock(cfg.lock_file)
            lock.acquire(cfg.lock_wait)
        message = COMMANDS[cmd](cfg)
    except Failure as exc:
        return 1, f"FAILED {exc}"
    except KeyboardInterrupt:
        return 130, "FAILED interrupted"
    except Exception as exc:  # noqa: BLE001 - report anything unexpected in one line, details on stderr
        traceback.print_exc(file=sys.stderr)
        extra = ""
        try:
            if isinstance(exc, aws_errors()):
                extra = " (AWS)"
        except ImportError:
            pass
        return 1, f"FAILED unexpected error{extra}: {describe(exc)}"
    finally:
        if lock is not None:
            lock.release()
    return 0, message
