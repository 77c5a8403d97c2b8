"""Helpers for the Ansible tests: the project's tools and the tool wheelhouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WHEEL_CACHE = Path(os.environ.get("ST_WHEEL_CACHE", "/var/cache/simpletrader/wheels"))


def tool(name: str) -> str:
    """A console script of the project's virtualenv (ansible-playbook, molecule, ...)."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else name


def tool_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PY_COLORS"] = "0"
    env.update(extra)
    return env


def tool_packages() -> list[str]:
    """The workspace_sync role's pinned tool requirements (one source of truth)."""
    defaults = yaml.safe_load((ROOT / "roles/workspace_sync/defaults/main.yml").read_text())
    return list(defaults["workspace_sync_tool_packages"])


def tool_wheelhouse() -> Path:
    """Wheels of the tool requirements for the host's Python 3.9, built once and cached."""
    packages = tool_packages()
    name = "tool-py39-" + "-".join(packages).replace("==", "__")
    dest = WHEEL_CACHE / name
    first = packages[0].replace("==", "-")
    if not (dest / f"{first}-py3-none-any.whl").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", "3.9",
             "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", str(dest), *packages],
            check=True, capture_output=True, text=True,
        )
    return dest
