"""The host's wheels: ``pip download`` for Python 3.9 on the host's platform, before any AWS call.

The host installs offline (``--no-index``) from what ``publish`` uploads, so
every requirement must have a wheel for the host's architecture.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from provision.artifacts import check_file
from provision.errors import PublishError

DEFAULT_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
ARM64_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
Log = Callable[[str], None]


def host_platforms(architecture: str) -> tuple[str, ...]:
    """The wheel platform tags for the host's ``instance.architecture`` (x86_64 or arm64)."""
    table = {"x86_64": DEFAULT_PLATFORMS, "arm64": ARM64_PLATFORMS, "aarch64": ARM64_PLATFORMS}
    try:
        return table[architecture]
    except KeyError:
        raise PublishError(f"instance.architecture {architecture!r} is not x86_64 or arm64") from None


def build_wheelhouse(
    requirements: Path,
    dest: Path,
    python_version: str = "3.9",
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    log: Log = print,
) -> list[Path]:
    """Download wheels of ``requirements`` for the host into ``dest``.

    Runs ``pip download --only-binary=:all: --python-version <v> --platform ...``
    with this interpreter's pip (and its configured indexes). Returns the
    wheel files in ``dest``, sorted. Raises PublishError when pip fails.
    """
    check_file(requirements, "requirements file", "point artifacts.requirements at requirements.txt")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        str(dest),
        "-r",
        str(requirements),
    ]
    for platform in platforms:
        cmd += ["--platform", platform]
    log(f"wheelhouse: pip download for Python {python_version} ({', '.join(platforms)}) into {dest}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-5:]
        raise PublishError(
            f"pip download failed for {requirements} (exit {proc.returncode}): "
            + " | ".join(tail)[-800:]
            + "; pin versions that publish wheels for Python "
            + python_version
        )
    wheels = sorted(p for p in dest.iterdir() if p.is_file() and p.name.endswith(".whl"))
    log(f"wheelhouse: {len(wheels)} wheel(s)")
    return wheels
