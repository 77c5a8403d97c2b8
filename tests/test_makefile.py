"""`make setup` on a machine whose Python is too old says so, with the fix, before pip runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_old_python_is_refused_up_front(tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\n'
                   'case "$*" in *platform*) echo 3.9.2;; *version_info*) exit 1;;\n'
                   '  *) echo "ran: $*" >&2; exit 2;; esac\n')
    old.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(["make", "-s", "-B", f"{venv}/.installed", f"PYTHON={old}", f"VENV={venv}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "is Python 3.9.2; ansible-core 2.19 (requirements.txt) needs 3.11 or newer" in proc.stdout
    assert "make setup PYTHON=python3.11" in proc.stdout
    assert "ran:" not in proc.stderr and not venv.exists()  # nothing else was tried
