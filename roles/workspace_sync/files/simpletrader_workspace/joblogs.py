"""The cron jobs' logs to the bucket at the end of the day, beside the trade logs.

``<state_dir>/logs/<job>-<YYYY-MM-DD>.log`` (written by the jobs' own command
lines as the trading user, who owns ``logs/``) goes to ``<logs
prefix><YYYY-MM-DD>/jobs/<job>-<YYYY-MM-DD>.log``, so a failed job can be read
without logging in to the host.

- Which: the logs dated from ``WINDOW_DAYS - 1`` days before today to today,
  so a day whose eod did not run is caught up by a later one, and a host's
  old logs are not all uploaded at once.
- How: read as root without following any link (``fsutil``: the directory
  opened from ``/``, each file ``O_NOFOLLOW``); a log that is not a regular
  file is skipped and said so. A log may grow while it is read: what was read
  is uploaded, with the sha256 of exactly that (``fsutil.snapshot``).
- The marker ``<state_dir>/job-logs-uploaded.json`` (root's) records each
  uploaded log with its size and sha256, rewritten after every upload; a log
  whose content differs from its record is uploaded again (a job that wrote
  after the eod of its day). Records older than the window are dropped.

Job logs do not belong to a release: they play no part in whether a
release's trade data is confirmed (``upload``), and nothing waits on them.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .clock import utc_now
from .config import Config
from .fsutil import Beneath, open_dir, read_json, snapshot
from .output import say
from .s3 import Bucket
from .upload import write_marker

MARKER = "job-logs-uploaded.json"
WINDOW_DAYS = 7
JOB_LOG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*-(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})\.log$")


@dataclass
class Uploaded:
    """What one pass did: logs uploaded now, logs already uploaded as they are, and logs it could not read."""

    uploaded: int = 0
    already: int = 0
    skipped: list[str] = field(default_factory=list)


def log_date(name: str) -> Optional[str]:
    """The date of a job log's name (``<job>-<YYYY-MM-DD>.log``), None for any other name."""
    match = JOB_LOG.match(name)
    return match.group("date") if match else None


def log_dir(cfg: Config) -> Path:
    return cfg.state_dir / "logs"


def key_of(cfg: Config, name: str, date: str) -> str:
    return f"{cfg.prefixes['logs']}{date}/jobs/{name}"


def upload_job_logs(cfg: Config, bucket: Bucket, today: str) -> Uploaded:
    """Upload the window's job logs not recorded with their current content. Raises on a failed upload."""
    first = (_dt.date.fromisoformat(today) - _dt.timedelta(days=WINDOW_DAYS - 1)).isoformat()
    marker = cfg.state_dir / MARKER

    def in_window(date: Optional[str]) -> bool:
        return date is not None and first <= date <= today

    files: dict[str, Any] = {k: v for k, v in ((read_json(marker) or {}).get("files") or {}).items()
                             if in_window(log_date(k))}
    done = Uploaded()
    try:
        dir_fd = open_dir(log_dir(cfg))
    except FileNotFoundError:
        return done  # no job has run on this host yet
    beneath = Beneath(log_dir(cfg), root_fd=dir_fd)
    try:
        for name in sorted(os.listdir(dir_fd)):
            date = log_date(name)
            if date is None or not in_window(date):
                continue
            try:
                fd = beneath.open_file(name)
            except FileNotFoundError:
                continue  # removed since it was listed
            except OSError as exc:
                say("eod", f"WARNING: job log {name} not uploaded: {exc.strerror or exc} (links are not followed)")
                done.skipped.append(name)
                continue
            try:
                copy, size, digest = snapshot(fd)
            finally:
                os.close(fd)
            with copy:
                entry = files.get(name)
                if isinstance(entry, dict) and (entry.get("size"), entry.get("sha256")) == (size, digest):
                    done.already += 1
                    continue
                bucket.upload(key_of(cfg, name, date), copy, digest)
            files[name] = {"key": key_of(cfg, name, date), "size": size, "sha256": digest, "uploaded_at": utc_now()}
            done.uploaded += 1
            write_marker(marker, cfg.bucket, files)
    finally:
        beneath.close()
        os.close(dir_fd)
    return done
