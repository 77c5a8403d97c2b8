"""A deterministic wheel of a small pure-Python project (the host routine, ``roles/workspace_sync/files``).

::

    python -m provision.wheel PROJECT_DIR OUT_DIR     # prints the wheel's path

The metadata comes from ``PROJECT_DIR/pyproject.toml`` (``[project]``: name,
version, description, requires-python, dependencies, scripts); the import
package is the directory named like the project with ``-`` as ``_``, and every
``.py`` file in it goes in. The result is a ``py3-none-any`` wheel whose
entries are sorted (the package first, its ``.dist-info`` last, ``RECORD``
last of all), each dated 1980-01-01 with mode 0644: the same sources give the
same bytes, so the role installs it again only when the routine changed. No
build backend runs; only the standard library is used.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import tomllib

from provision.errors import ProvisionError
from provision.zips import deterministic_zip

TAG = "py3-none-any"
# The [project] keys this builder turns into metadata; any other is refused rather than silently dropped.
KNOWN_KEYS = {"name", "version", "description", "requires-python", "dependencies", "scripts", "license"}


def build_wheel(project_dir: Path, out_dir: Path) -> Path:
    """Write the project's wheel into ``out_dir`` (created if missing) and return its path."""
    project = read_project(project_dir / "pyproject.toml")
    dist = normalize(project["name"])
    package = project_dir / dist
    if not (package / "__init__.py").is_file():
        raise ProvisionError(f"{package} is not a package (no __init__.py): the import package must be named "
                             f"{dist!r} after the project {project['name']!r}")
    dist_info = f"{dist}-{project['version']}.dist-info"
    entries = [(f"{dist}/{rel}", (package / rel).read_bytes()) for rel in package_files(package)]
    entries += [
        (f"{dist_info}/METADATA", metadata(project).encode()),
        (f"{dist_info}/WHEEL", wheel_info().encode()),
    ]
    if project.get("scripts"):
        entries.append((f"{dist_info}/entry_points.txt", entry_points(project["scripts"]).encode()))
    entries.sort(key=lambda e: (e[0].startswith(dist_info), e[0]))
    entries.append((f"{dist_info}/RECORD", record(entries, f"{dist_info}/RECORD").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{dist}-{project['version']}-{TAG}.whl"
    tmp = wheel.with_name(f".{wheel.name}.tmp-{os.getpid()}")
    tmp.write_bytes(deterministic_zip(entries))
    os.replace(tmp, wheel)
    return wheel


def read_project(pyproject: Path) -> dict[str, Any]:
    """The ``[project]`` table, with the keys a wheel needs checked."""
    try:
        doc = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"cannot read {pyproject}: {exc}") from None
    project = doc.get("project")
    if not isinstance(project, dict):
        raise ProvisionError(f"{pyproject} has no [project] table")
    unknown = sorted(set(project) - KNOWN_KEYS)
    if unknown:
        raise ProvisionError(f"{pyproject}: [project] keys this builder does not handle: {', '.join(unknown)}")
    for key in ("name", "version"):
        if not isinstance(project.get(key), str) or not project[key]:
            raise ProvisionError(f"{pyproject}: [project] needs a {key}")
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", project["name"]):
        raise ProvisionError(f"{pyproject}: {project['name']!r} is not a valid project name")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", project["version"]):
        raise ProvisionError(f"{pyproject}: version {project['version']!r} must be plain numbers (1.0.0)")
    return project


def normalize(name: str) -> str:
    """The name as wheel file names and import packages spell it (PEP 427, PEP 503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def package_files(package: Path) -> list[str]:
    """The package's ``.py`` files, relative to it, sorted (no ``__pycache__``)."""
    return sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if p.is_file() and "__pycache__" not in p.relative_to(package).parts
    )


def metadata(project: dict[str, Any]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    license_ = project.get("license")
    if isinstance(license_, dict) and license_.get("text"):
        lines.append(f"License: {license_['text']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def wheel_info() -> str:
    return "\n".join(["Wheel-Version: 1.0", "Generator: provision.wheel", "Root-Is-Purelib: true",
                      f"Tag: {TAG}"]) + "\n"


def entry_points(scripts: dict[str, str]) -> str:
    return "[console_scripts]\n" + "".join(f"{name} = {target}\n" for name, target in sorted(scripts.items()))


def record(entries: list[tuple[str, bytes]], record_name: str) -> str:
    """RECORD: every entry's urlsafe-base64 sha256 (no padding) and size; RECORD itself without either."""
    lines = []
    for name, data in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    lines.append(f"{record_name},,")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m provision.wheel PROJECT_DIR OUT_DIR", file=sys.stderr)
        return 2
    try:
        wheel = build_wheel(Path(argv[0]), Path(argv[1]))
    except ProvisionError as exc:
        print(f"provision.wheel: {exc}", file=sys.stderr)
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
