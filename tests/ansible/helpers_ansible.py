"""Helpers for the Ansible tests: the project's tools and the tool wheelhouse."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WHEEL_CACHE = Path(os.environ.get("ST_WHEEL_CACHE", "/var/cache/simpletrader/wheels"))


def tool(name: str) -> str:
    """A console script of the project's virtualenv (ansible-playbook, molecule, ...)."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else name


def control_path_dir() -> Path:
    """A directory of SSH's shared connections for one call, removed at exit: short (a socket path has about
    100 bytes), and its own, since test hosts reuse addresses and a master connection kept for a host that
    is gone must not serve the next one."""
    control_dir = Path(tempfile.mkdtemp(prefix="st-cp-"))
    atexit.register(shutil.rmtree, control_dir, True)
    return control_dir


def tool_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PY_COLORS"] = "0"
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_path_dir())
    env.update(extra)
    return env


def tool_wheelhouse() -> Path:
    """Wheels of the tool requirements for the host's Python 3.9, built once and cached."""
    from devtools.wheels import tool_wheelhouse as build

    return build()
