"""``simpletrader-workspace status``: the workdir, each release's upload state, the lock, the ready marker."""

from __future__ import annotations

import os
from typing import Any

from .config import Config
from .fsutil import read_json
from .lock import Lock
from .output import Outcome, say
from .release import current_release, read_meta, release_dirs
from .upload import is_confirmed


def run(cfg: Config) -> Outcome:
    current = current_release(cfg)
    if cfg.workdir.is_symlink():
        say("status", f"workdir {cfg.workdir} -> {os.readlink(str(cfg.workdir))}")
    elif cfg.workdir.is_dir():
        say("status", f"workdir {cfg.workdir} is a plain directory (not synced yet)")
    else:
        say("status", f"workdir {cfg.workdir} does not exist")
    for rel in release_dirs(cfg):
        flags = []
        if rel == current:
            flags.append("current")
        flags.append("uploaded" if is_confirmed(cfg, rel) else "NOT uploaded")
        venv = str(read_meta(rel).get("venv") or "-")[:12]
        say("status", f"release {rel.name} (venv {venv}) [{', '.join(flags)}]")
    lock = Lock(cfg.lock_file).probe()
    say("status", f"lock {cfg.lock_file}: {lock}")
    details: dict[str, Any] = {"lock": lock, "release": None, "date": None, "fresh": False}
    ready = read_json(cfg.ready_file)
    if ready is None:
        return Outcome(f"not ready (no ready marker at {cfg.ready_file})", details)
    today = cfg.today()
    details.update(release=ready.get("release"), date=ready.get("date"), fresh=ready.get("date") == today)
    fresh = "today" if details["fresh"] else f"stale, today is {today}"
    return Outcome("ready marker release={} date={} ({})".format(ready.get("release"), ready.get("date"), fresh),
                   details)
