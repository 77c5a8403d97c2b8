"""Wheels for the test host (CPython 3.9), built once with publish's own builder and cached."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from devtools.testhost import ROOT

WHEEL_CACHE = Path(os.environ.get("ST_WHEEL_CACHE", "/var/cache/simpletrader/wheels"))


def download_wheels(requirements: list[str], dest: Path, log: Path | None = None) -> Path:
    """Wheels for the host (CPython 3.9), with publish's own builder, cached per requirement set.

    Each set gets a directory of its own (dest/<hash>), so wheels of an older pin
    list never sit beside the current ones.
    """
    from provision.wheelhouse import build_wheelhouse

    here = dest / hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    stamp = here / ".complete"
    if not stamp.exists():
        here.mkdir(parents=True, exist_ok=True)
        reqs = here / ".requirements.txt"
        reqs.write_text("\n".join(requirements) + "\n")
        lines: list[str] = []
        build_wheelhouse(reqs, here, log=lines.append)
        if log is not None:
            with open(log, "a") as fh:
                fh.write("\n".join(lines) + "\n")
        stamp.write_text("")
    return here


def tool_wheelhouse(log: Path | None = None) -> Path:
    """Wheels for the host routine's virtualenv, from the role's pinned tool packages."""
    import yaml

    defaults = yaml.safe_load((ROOT / "roles/workspace_sync/defaults/main.yml").read_text())
    return download_wheels(list(defaults["workspace_sync_tool_packages"]), WHEEL_CACHE / "host-tools", log)
