"""The code base as a deterministic, ranged-readable ``code.tar.gz`` and its index (docs/CONTRACTS.md).

Same tree, same bytes: entries sorted, owners 0/0, mtimes fixed, modes
normalised. Caches, VCS data, trade data and secrets are never packed; a link
out of the tree or a special file is refused with the path and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from provision.errors import PublishError

CODE_INDEX_NAME = "code-index.json"
CODE_INDEX_VERSION = 1
# Never packed into the code archive: caches, VCS data, the host's trade data
# (it lives in the workspace and is uploaded by the end-of-day routine), and
# secrets that sit in a developer's working copy (they go to secrets/).
EXCLUDE_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "trade_logs",
        "ledger",
    }
)
EXCLUDE_TOP_FILES = frozenset({".simpletrader-release.json", ".simpletrader-uploaded.json"})
# Secrets are never packed into the code archive, at any depth: they go to
# secrets/ and land on the host mode 0600, while the code is world-readable.
EXCLUDE_SECRET_FILES = frozenset({"keys.json", "access_token.txt", ".env"})
EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".pem")
FIXED_MTIME = 0


def _iter_code_files(code_dir: Path) -> Iterable[tuple[str, Path]]:
    """(archive name, path) for everything packed, sorted, directories first within each level."""
    root = code_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDE_DIRS)
        top = here == root
        for name in sorted(filenames + [d for d in dirnames if (here / d).is_symlink()]):
            if name.endswith(EXCLUDE_SUFFIXES) or name in EXCLUDE_SECRET_FILES or (top and name in EXCLUDE_TOP_FILES):
                continue
            path = here / name
            yield path.relative_to(root).as_posix(), path
        for name in dirnames:
            if not (here / name).is_symlink():
                yield (here / name).relative_to(root).as_posix() + "/", here / name


def build_code_archive(code_dir: Path) -> bytes:
    """A deterministic gzip tar of the code base: same tree, same bytes (see ``build_code_release``)."""
    return build_code_release(code_dir)[0]


def build_code_release(code_dir: Path) -> tuple[bytes, list[dict[str, Any]]]:
    """The code archive and its index: ``(code.tar.gz bytes, entries)``.

    Entries are sorted, owners are 0/0 with no names, mtimes fixed, modes
    normalised to 0644 (0755 when any execute bit is set, and for
    directories). Symlinks are kept when they point inside the tree;
    others, and special files, are refused.

    Every tar entry (header, data, padding) is compressed as a gzip member of
    its own, and the members are concatenated: the whole is an ordinary
    ``.tar.gz`` any tar reader extracts, and one file's member can also be
    fetched alone with a ranged GET and decompressed by itself. The index
    lists every entry in archive order: ``{"path", "type": "dir"|"file"|
    "symlink", "mode"}``, plus ``size``, ``sha256``, ``offset`` and
    ``length`` (of its gzip member in the archive) for files and ``target``
    for symlinks (docs/CONTRACTS.md, code index).
    """
    root = code_dir.resolve()
    entries = sorted(_iter_code_files(code_dir), key=lambda e: e[0])
    raw = io.BytesIO()
    spans: list[tuple[int, int]] = []
    index: list[dict[str, Any]] = []
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = FIXED_MTIME
            begin = raw.tell()
            if path.is_symlink():
                target = os.readlink(path)
                resolved = (path.parent / target).resolve()
                if os.path.isabs(target) or not resolved.is_relative_to(root):
                    raise PublishError(
                        f"{path} is a symlink to {target}, outside the code directory; "
                        "replace it with a copy or a relative link inside the tree"
                    )
                info.type = tarfile.SYMTYPE
                info.linkname = target
                info.mode = 0o777
                tar.addfile(info)
                entry: dict[str, Any] = {"path": info.name, "type": "symlink", "mode": 0o777, "target": target}
            elif name.endswith("/"):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                entry = {"path": info.name, "type": "dir", "mode": 0o755}
            elif path.is_file():
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                tar.addfile(info, io.BytesIO(data))
                entry = {"path": info.name, "type": "file", "mode": info.mode, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()}
            else:
                raise PublishError(
                    f"{path} is not a regular file, directory or symlink; remove it from the code directory"
                )
            spans.append((begin, raw.tell()))
            index.append(entry)
    tar_bytes = raw.getvalue()
    tail = spans[-1][1] if spans else 0
    out = io.BytesIO()
    for entry, (begin, finish) in zip(index, spans):
        member = gzip.compress(tar_bytes[begin:finish], compresslevel=9, mtime=FIXED_MTIME)
        if entry["type"] == "file":
            entry.update(offset=out.tell(), length=len(member))
        out.write(member)
    out.write(gzip.compress(tar_bytes[tail:], compresslevel=9, mtime=FIXED_MTIME))  # end-of-archive blocks
    return out.getvalue(), index


def code_index(code_key: str, archive: bytes, entries: list[dict[str, Any]]) -> bytes:
    """The code index object (docs/CONTRACTS.md): the entries, bound to the archive they point into."""
    doc = {
        "version": CODE_INDEX_VERSION,
        "archive": {"key": code_key, "size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()},
        "entries": entries,
    }
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode("utf-8")
