"""Release directories: which exist, which is current, a new one's life, and what may go.

``<state_dir>/releases/<release>_<sync UTC timestamp>/`` per successful sync
(``legacy-<timestamp>`` for an adopted plain workdir); the workdir is a
symlink to the current one (switched by ``workdir.switch``). ``rescue``
uploads what earlier releases did not confirm; ``prune`` removes releases
beyond ``keep_releases`` (never the current one, never one with unconfirmed
data) and unused virtualenvs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .clock import utc_stamp
from .config import Config
from .fsutil import PARTIAL, fsync_dir, read_json, remove_tree, write_atomic
from .output import say
from .s3 import Bucket, aws_errors, describe
from .upload import is_confirmed, upload_data

RELEASE_META = ".simpletrader-release.json"


def release_dirs(cfg: Config) -> list[Path]:
    """Finished release directories, oldest first."""
    if not cfg.releases.is_dir():
        return []
    out = []
    for child in cfg.releases.iterdir():
        if child.name.endswith(PARTIAL) or child.name.startswith(".") or child.is_symlink():
            continue
        if child.is_dir():
            out.append(child)

    def order(path: Path) -> tuple[str, str]:
        meta = read_meta(path)
        return (str(meta.get("synced_at") or ""), path.name)

    return sorted(out, key=order)


def write_ready(cfg: Config, doc: dict[str, Any]) -> None:
    """The ready marker the cron jobs' guard reads: indented JSON, readable by the trading user."""
    write_atomic(cfg.ready_file, (json.dumps(doc, indent=1) + "\n").encode(), 0o644)


def read_meta(release: Path) -> dict[str, Any]:
    """A release's ``.simpletrader-release.json`` ({} when missing or unreadable)."""
    return read_json(release / RELEASE_META) or {}


def current_release(cfg: Config) -> Optional[Path]:
    """The release directory the workdir symlink points at; None when it points anywhere else.

    The symlink sits in a directory of the trading user, who could point it at
    any directory: only a release of this state dir counts as the workspace.
    """
    if cfg.workdir.is_symlink():
        target = Path(os.path.realpath(str(cfg.workdir)))
        if target.is_dir() and target.parent == Path(os.path.realpath(str(cfg.releases))):
            return target
    return None


@dataclass(frozen=True)
class NewRelease:
    """A release being built in ``releases/<dir>.partial``, renamed to ``releases/<dir>`` when complete."""

    release: str
    dirname: str
    partial: Path
    final: Path

    @classmethod
    def start(cls, cfg: Config, release: str) -> NewRelease:
        dirname = f"{release}_{utc_stamp()}"
        new = cls(release, dirname, cfg.releases / (dirname + PARTIAL), cfg.releases / dirname)
        new.partial.mkdir()
        return new

    def finish(self) -> None:
        os.rename(str(self.partial), str(self.final))
        fsync_dir(self.final.parent)

    def discard(self) -> None:
        remove_tree(self.partial)


def rescue(cfg: Config, bucket: Bucket) -> list[Path]:
    """Upload unconfirmed trade data of every release. Returns releases still unconfirmed."""
    releases = release_dirs(cfg)
    # The workspace's own release is the newest ledger: the order of the others comes from a marker the
    # trading user could rewrite.
    newest = current_release(cfg) or (releases[-1] if releases else None)
    failed: list[Path] = []
    rewrote_ledger = False
    for rel in releases:
        if is_confirmed(cfg, rel):
            continue
        try:
            n, _ = upload_data(cfg, bucket, rel)
        except aws_errors() + (OSError,) as exc:
            say(
                "sync",
                f"WARNING: could not upload the trade data of {rel.name} ({describe(exc)}); it is kept",
            )
            failed.append(rel)
            # Part of it may be up before the failure (the marker keeps each file): its ledger too.
            rewrote_ledger = rewrote_ledger or rel != newest
            continue
        say("sync", f"uploaded {n} unconfirmed trade data file(s) of release {rel.name}")
        if rel != newest and n:
            rewrote_ledger = True
    if rewrote_ledger and newest is not None and newest not in failed:
        # An older ledger may have overwritten the newer one in the bucket.
        try:
            upload_data(cfg, bucket, newest, force=cfg.ledger)
        except aws_errors() + (OSError,) as exc:
            say("sync", f"WARNING: could not re-upload the newest ledger ({describe(exc)})")
            failed.append(newest)
    return failed


def prune(cfg: Config) -> None:
    """Remove releases beyond ``keep_releases`` whose data is confirmed, then virtualenvs no release uses."""
    releases = release_dirs(cfg)
    current = current_release(cfg)
    excess = [r for r in releases if r != current][: max(0, len(releases) - cfg.keep_releases)]
    for rel in excess:
        if not is_confirmed(cfg, rel):
            say("sync", f"keeping {rel.name}: its trade data is not confirmed uploaded")
            continue
        say("sync", f"pruning release {rel.name}")
        remove_tree(rel)
    used = {str(meta["venv"]) for meta in map(read_meta, release_dirs(cfg)) if meta.get("venv")}
    pruned_venvs = 0
    if cfg.venvs.is_dir():
        for venv in cfg.venvs.iterdir():
            if venv.is_dir() and venv.name not in used:
                say("sync", f"pruning unused virtualenv {venv.name}")
                remove_tree(venv)
                pruned_venvs += 1
    if pruned_venvs and cfg.uv_cache.exists():
        # uv links the virtualenvs' files from its cache: removing it leaves them whole, and keeps the
        # cache from growing by every requirements set ever built. The next build unpacks again.
        say("sync", "clearing uv's cache (the wheels of pruned virtualenvs)")
        remove_tree(cfg.uv_cache)
