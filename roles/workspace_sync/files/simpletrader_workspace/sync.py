"""``simpletrader-workspace sync``: the bucket's release becomes the workspace, or nothing changes.

In order (docs/CONTRACTS.md, "Sync order and failure rules"): check and
prepare the state dir, move the state of earlier versions into it, remove an
interrupted sync's leftovers, adopt a plain workdir,
rescue unconfirmed trade data, read the manifest, download and verify into
``releases/<dir>.partial``, build the code base, place the secrets and the
ledger, build or reuse the virtualenv, flush, rename, switch the workdir
symlink, write ``ready.json`` last, prune. Any failure before the switch
leaves the previous workspace and ready marker as they were.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import s3, statedir, workdir
from .clock import parse_iso_utc, utc_now
from .codebase import build_code, check_links, extract_code
from .codeindex import Plan, plan_code, read_code_index
from .config import Config
from .errors import Failure
from .fsutil import PARTIAL, chown_tree, read_json, remove_tree, sha256_file, write_json
from .ledger import carry_today, seed_ledger
from .manifest import by_role, read_manifest
from .migrate import migrate
from .output import Outcome, say
from .release import RELEASE_META, NewRelease, current_release, prune, rescue
from .release import write_ready as store_ready
from .venv import VENV_MARKER, ensure_venv, fetch_wheel, prune_wheelhouse, venv_complete

SECRETS = ("keys.json", "access_token.txt")


@dataclass
class Staged:
    """What the download step leaves for the next ones."""

    code: dict[str, Any]
    entries: Optional[list[Any]]  # the code index's, when the manifest has one
    plan: Optional[Plan]  # None: extract the whole archive (downloaded to staging)
    req_hash: str  # sha256 of requirements.txt: the virtualenv's name
    venv_ready: bool  # that virtualenv is built already
    token_time: Optional[str]
    wheel_names: list[str]


def run(cfg: Config) -> Outcome:
    uid, gid = cfg.owner_ids()
    today = cfg.today()  # a bad timezone fails here, before anything changes
    statedir.prepare(cfg)
    workdir.prepare(cfg, (uid, gid))
    moved = migrate(cfg, "sync")
    if moved:
        say("sync", moved)
    remove_leftovers(cfg)
    workdir.adopt_legacy(cfg, "sync")
    bucket = s3.Bucket(s3.client(cfg), cfg.bucket)
    unconfirmed = rescue(cfg, bucket)
    if unconfirmed:
        say("sync", f"kept {len(unconfirmed)} release(s) whose trade data is not uploaded")

    manifest = read_manifest(cfg, bucket)
    release = manifest["release"]
    say("sync", f"manifest release {release} ({len(manifest['objects'])} objects)")
    new = NewRelease.start(cfg, release)
    staged = build_release(cfg, bucket, manifest, new, current_release(cfg), (uid, gid))
    workdir.switch(cfg, new.final)
    write_ready(cfg, new, staged, today)
    try:
        prune(cfg)
        prune_wheelhouse(cfg, set(staged.wheel_names))
    except OSError as exc:
        say("sync", f"WARNING: cleanup after the switch failed: {exc}")
    return Outcome(
        f"ready release={release} venv={staged.req_hash}",
        {"release": release, "venv": staged.req_hash, "venv_reused": staged.venv_ready,
         "release_dir": str(new.final)},
    )


def remove_leftovers(cfg: Config) -> None:
    """What an interrupted sync left: ``.partial`` directories, temporary files and links, incomplete venvs."""
    for parent in (cfg.releases, cfg.venvs, cfg.wheelhouse, cfg.state_dir):
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            if child.name.endswith(PARTIAL) or (child.name.startswith(".") and ".tmp-" in child.name):
                say("sync", f"removing leftover {child}")
                remove_tree(child)
    workdir.remove_switch_leftovers(cfg, "sync")
    if cfg.venvs.is_dir():
        for child in cfg.venvs.iterdir():
            if child.is_dir() and not (child / VENV_MARKER).exists():
                say("sync", f"removing incomplete virtualenv {child.name}")
                remove_tree(child)


def build_release(cfg: Config, bucket: s3.Bucket, manifest: dict[str, Any], new: NewRelease,
                  previous: Optional[Path], owner: tuple[int, int]) -> Staged:
    """Build the new release in its ``.partial`` directory and rename it; on any failure remove it."""
    staging = cfg.state_dir / ("staging" + PARTIAL)
    try:
        staging.mkdir()
        staged = download(cfg, bucket, manifest, new.partial, staging, previous, owner[0])
        place_code(bucket, staged, new.partial, staging)
        place_files(cfg, bucket, staged, previous, new.partial, staging)
        venv = ensure_venv(cfg, staging / "requirements.txt", staged.req_hash)
        write_json(new.partial / RELEASE_META, {
            "release": new.release,
            "dir": new.dirname,
            "synced_at": utc_now(),
            "venv": staged.req_hash,
            "python": str(venv / "bin" / "python"),
            "token_published_at": staged.token_time,
            "wheels": staged.wheel_names,
        })
        chown_tree(new.partial, *owner)
        # One flush of everything written (code, secrets, wheels, venv) before the
        # workspace can be switched to it, instead of an fsync per file.
        os.sync()
        new.finish()
    except BaseException:
        new.discard()
        remove_tree(staging)
        raise
    remove_tree(staging)
    return staged


def download(cfg: Config, bucket: s3.Bucket, manifest: dict[str, Any], partial: Path, staging: Path,
             previous: Optional[Path], uid: int) -> Staged:
    """Download and verify the release's objects: the code (unless the index plan needs only parts of it),
    requirements.txt, the secrets, and the wheels when the virtualenv is not built yet."""
    objects = by_role(manifest)
    code = objects["code"][0]
    entries = read_code_index(bucket, manifest, code)
    plan = plan_code(cfg, entries, previous, code["size"], uid) if entries is not None else None
    if plan is None:
        bucket.download(code, staging / "code.tar.gz")
    bucket.download(objects["requirements"][0], staging / "requirements.txt")
    bucket.download(objects["keys"][0], partial / "keys.json", mode=0o600)
    token_time = bucket.download(objects["token"][0], partial / "access_token.txt", mode=0o600)
    wheels = objects.get("wheel", [])
    # Wheels only build virtualenvs: when this one is built already, they are not needed.
    req_hash = sha256_file(staging / "requirements.txt")
    venv_ready = venv_complete(cfg, req_hash)
    if not venv_ready:
        for obj in wheels:
            fetch_wheel(cfg, bucket, obj)
    skipped_wheels = len(wheels) if venv_ready else 0
    notes = (["the code by its index"] if plan is not None else []) + (
        [f"{skipped_wheels} wheel(s) not needed: the virtualenv is built"] if skipped_wheels else [])
    fetched_objects = len(manifest["objects"]) - (plan is not None) - skipped_wheels
    say("sync", f"downloaded and verified {fetched_objects} objects" + (f" ({'; '.join(notes)})" if notes else ""))
    keys = read_json(partial / "keys.json")
    if keys is None:
        raise Failure("secrets keys.json is not a JSON object; publish a valid keys.json")
    say("sync", f"keys.json has keys: {', '.join(sorted(keys)) or '(none)'}")
    return Staged(code, entries, plan, req_hash, venv_ready, token_time,
                  sorted(obj["key"].rsplit("/", 1)[-1] for obj in wheels))


def place_code(bucket: s3.Bucket, staged: Staged, partial: Path, staging: Path) -> None:
    if staged.plan is None:
        files = extract_code(staging / "code.tar.gz", partial)
        check_links(partial)
        say("sync", f"extracted {files} files of the code base")
        return
    assert staged.entries is not None
    files, reused, fetched, requests = build_code(bucket, staged.code, staged.entries, staged.plan, partial)
    say("sync", f"built the code base: {files} files, {reused} unchanged since the previous workspace, "
                f"{fetched} fetched in {requests} ranged request(s)")


def place_files(cfg: Config, bucket: s3.Bucket, staged: Staged, previous: Optional[Path], partial: Path,
                staging: Path) -> None:
    """requirements.txt, the secrets (0600; the token dated when it was published), today's trade logs (a sync
    during the day) and the ledger."""
    shutil.copyfile(str(staging / "requirements.txt"), str(partial / "requirements.txt"))
    for secret in SECRETS:
        os.chmod(str(partial / secret), 0o600)
    if staged.token_time:
        stamp = parse_iso_utc(staged.token_time).timestamp()
        os.utime(str(partial / "access_token.txt"), (stamp, stamp))
    carry_today(cfg, previous, partial)
    seed_ledger(cfg, bucket, previous, partial)


def write_ready(cfg: Config, new: NewRelease, staged: Staged, today: str) -> None:
    """The ready marker, last; if it cannot be written after the switch, no stale one may claim readiness."""
    try:
        ready = {
            "release": new.release,
            "date": today,
            "python": str(cfg.venvs / staged.req_hash / "bin" / "python"),
            "venv": staged.req_hash,
            "release_dir": str(new.final),
            "workdir": str(cfg.workdir),
            "token_published_at": staged.token_time,
            "synced_at": utc_now(),
        }
        store_ready(cfg, ready)
    except BaseException:
        try:
            cfg.ready_file.unlink()
        except OSError:
            pass
        raise
