"""The trading virtualenvs: one per requirements.txt (by sha256), built offline from the wheelhouse.

``<state_dir>/venvs/<sha256>/`` is complete when its ``.simpletrader-complete``
marker exists; it is built in place (a virtualenv records its own path) with
uv or pip, from ``<state_dir>/wheelhouse/`` (verified wheels cached by file
name), with the environment's ``PIP_*``/``UV_*`` settings ignored.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from .clock import utc_now
from .config import Config
from .errors import Failure
from .fsutil import PARTIAL, read_json, remove_tree, sha256_file, write_json
from .lock import HELD_LOCK_FDS
from .output import say
from .s3 import Bucket

VENV_MARKER = ".simpletrader-complete"
VENV_TIMEOUT, INSTALL_TIMEOUT = 600, 1800
# (command, what it does for the failure line, timeout in seconds)
Step = tuple[list[str], str, int]


def fetch_wheel(cfg: Config, bucket: Bucket, obj: dict[str, Any]) -> Path:
    """Wheels are cached in <state_dir>/wheelhouse by file name, verified by sha256."""
    name = str(obj["key"]).rsplit("/", 1)[-1]
    dest = cfg.wheelhouse / name
    if dest.is_file() and dest.stat().st_size == obj["size"] and sha256_file(dest) == obj["sha256"]:
        return dest
    tmp = cfg.wheelhouse / (name + PARTIAL)
    bucket.download(obj, tmp)
    os.replace(str(tmp), str(dest))
    return dest


def prune_wheelhouse(cfg: Config, keep: set[str]) -> None:
    """Remove the cached wheels the current manifest does not list."""
    for wheel in cfg.wheelhouse.iterdir():
        if wheel.name not in keep:
            wheel.unlink()


def clean_pip_env() -> dict[str, str]:
    """The environment of the venv and install commands: no PIP_*/UV_* settings from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) and k != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.update(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    return env


def installer_env(cfg: Config) -> dict[str, str]:
    """clean_pip_env plus uv's cache in the state dir (for ``uv venv`` and ``uv pip`` alike)."""
    return dict(clean_pip_env(), UV_CACHE_DIR=str(cfg.uv_cache))


def find_uv(cfg: Config) -> Optional[str]:
    """The uv binary the config names, or the one next to this interpreter, or on PATH."""
    if cfg.uv:
        return cfg.uv if os.access(cfg.uv, os.X_OK) else None
    beside = os.path.join(os.path.dirname(sys.executable), "uv")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("uv")


def install_commands(cfg: Config, venv: Path, requirements: Path) -> tuple[str, list[Step]]:
    """(installer name, [(command, what, timeout)]) that build ``venv`` from the local wheelhouse."""
    uv = find_uv(cfg) if cfg.installer in ("auto", "uv") else None
    if cfg.installer == "uv" and uv is None:
        where = cfg.uv or f"{os.path.dirname(sys.executable)}/uv or on PATH"
        raise Failure(
            f"installer is uv but there is no uv at {where}; install it in the tool virtualenv "
            "(roles/workspace_sync) or set installer to pip"
        )
    if uv is not None:
        return "uv", [
            ([uv, "venv", "--quiet", "--offline", "--python", cfg.python, str(venv)], "creating the virtualenv",
             VENV_TIMEOUT),
            (
                [uv, "pip", "install", "--quiet", "--offline", "--no-index", "--compile-bytecode",
                 "--python", str(venv / "bin" / "python"),
                 "--find-links", str(cfg.wheelhouse), "-r", str(requirements)] + cfg.pip_extra_args,
                "uv pip install from the wheelhouse",
                INSTALL_TIMEOUT,
            ),
        ]
    return "pip", [
        ([cfg.python, "-m", "venv", str(venv)], "creating the virtualenv", VENV_TIMEOUT),
        (
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--find-links", str(cfg.wheelhouse),
             "-r", str(requirements)] + cfg.pip_extra_args,
            "pip install from the wheelhouse",
            INSTALL_TIMEOUT,
        ),
    ]


def run_logged(cmd: list[str], what: str, env: Optional[dict[str, str]] = None, timeout: int = 1800) -> None:
    """Run an installer step; on failure, print its output's tail and raise a Failure with its last line.

    It inherits the lock's descriptor: if this process is killed, the lock
    stays held until the step has exited too.
    """
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
            check=False,
            pass_fds=tuple(HELD_LOCK_FDS),
        )
    except FileNotFoundError:
        raise Failure(f"{what}: {cmd[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise Failure(f"{what} timed out after {timeout}s") from None
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-15:]
        for line in tail:
            print("    " + line, flush=True)
        last = tail[-1].strip() if tail else ""
        raise Failure(f"{what} failed (exit {proc.returncode})" + ((": " + last) if last else ""))


def venv_complete(cfg: Config, req_hash: str) -> bool:
    """Whether the virtualenv for these requirements is built, by the configured interpreter."""
    venv = cfg.venvs / req_hash
    info = read_json(venv / VENV_MARKER)
    return info is not None and info.get("python") == cfg.python and (venv / "bin" / "python").exists()


def ensure_venv(cfg: Config, requirements: Path, req_hash: str, cmd: str = "sync") -> Path:
    """The virtualenv for this requirements.txt: reused when complete, else built.

    Built in place at venvs/<hash> and marked complete last (a virtualenv
    embeds its own path, so it cannot be built elsewhere and renamed); a
    directory without the marker is removed and rebuilt. ``req_hash`` is the
    sha256 of ``requirements``.
    """
    venv = cfg.venvs / req_hash
    if venv_complete(cfg, req_hash):
        say(cmd, f"reusing virtualenv {req_hash[:12]}")
        return venv
    if venv.exists():
        say(cmd, f"rebuilding virtualenv {req_hash[:12]} (incomplete or other interpreter)")
        remove_tree(venv)
    cfg.venvs.mkdir(parents=True, exist_ok=True)
    installer, commands = install_commands(cfg, venv, requirements)
    say(cmd, f"building virtualenv {req_hash[:12]} with {cfg.python} ({installer})")
    env = installer_env(cfg)
    try:
        for argv, what, timeout in commands:
            run_logged(argv, what, env=env, timeout=timeout)
    except BaseException:
        remove_tree(venv)
        raise
    info = {"python": cfg.python, "requirements_sha256": req_hash, "built_at": utc_now(), "installer": installer}
    write_json(venv / VENV_MARKER, info)
    return venv
