"""The routine's configuration: ``/etc/simpletrader/workspace.json``, written by the role.

Every key is in ``SCHEMA`` below, with its JSON type, default and check; only
``bucket`` and ``workdir`` are required. As JSON, with the defaults::

    {
      "region": "ap-south-1",
      "bucket": "simpletrader-working-bucket-ajith",
      "endpoint_url": null,
      "prefixes": {"deploy": "deploy/", "secrets": "secrets/",
                   "logs": "SimpleTraderLogs/", "ledger": "SimpleTraderLedger/"},
      "workdir": "/home/ec2-user/projects/SimpleTrader",
      "state_dir": "/var/lib/simpletrader",
      "old_state_dir": "/home/ec2-user/projects/.simpletrader",
      "owner": {"user": "ec2-user", "group": "ec2-user"},
      "python": "/usr/bin/python3.9",
      "lock_file": "/run/lock/simpletrader.lock",
      "lock_wait_seconds": 60,
      "timezone": "Asia/Kolkata",
      "closure_script": "src/setup/closure_setup.py",
      "closure_timeout_seconds": 600,
      "uploads": {"trade_logs": "trade_logs", "ledger": "ledger"},
      "keep_releases": 2,
      "installer": "auto",
      "uv": null,
      "pip_extra_args": []
    }

- ``endpoint_url``: an S3 endpoint override (tests, the local emulator);
  without it botocore's own resolution applies (``AWS_ENDPOINT_URL`` included).
- ``state_dir``: root's directory (releases, virtualenvs, wheelhouse, ready
  marker). It must be owned by root, writable by root only, and reached
  through directories only root can change (``statedir.prepare`` refuses
  anything else), and be on the same file system as the workdir.
- ``old_state_dir``: where earlier versions kept that state (``<parent of
  workdir>/.simpletrader``, in the trading user's directory); its content is
  moved to ``state_dir`` once (``migrate``).
- ``owner``: who owns the workspace (the cron jobs' user; default: who runs
  the routine); ``group`` defaults to the user's primary group.
- ``python``: the 3.9 interpreter that creates the trading virtualenvs.
- ``closure_script``: relative to the workdir; empty for none. Missing from the
  workspace, it is skipped with a warning (eod's last line).
- ``installer``: what builds the trading virtualenvs. ``uv`` (``uv venv``,
  then ``uv pip install --offline --no-index --compile-bytecode``, with its
  cache in ``<state_dir>/uv-cache``) or ``pip`` (``python -m venv``, then
  ``pip install --no-index``). ``auto`` takes uv when it is found (``uv`` if
  set, else next to the routine's interpreter, else on PATH) and pip
  otherwise. ``pip_extra_args`` go to either install command.
- Integer values may also be given as strings of digits (templated configs).
"""

from __future__ import annotations

import datetime as _dt
import grp
import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import Failure

DEFAULT_CONFIG = "/etc/simpletrader/workspace.json"
PREFIX_NAMES = ("deploy", "secrets", "logs", "ledger")
# The stack config's defaults (logs and ledger under the original app's prefixes); the role always writes all four.
DEFAULT_PREFIXES = {"deploy": "deploy/", "secrets": "secrets/", "logs": "SimpleTraderLogs/",
                    "ledger": "SimpleTraderLedger/"}
INSTALLERS = ("auto", "uv", "pip")
REQUIRED = object()


def _absolute(value: str) -> Optional[str]:
    path = Path(value)
    return None if path.is_absolute() and ".." not in path.parts else "'workdir' must be an absolute path"


def _absolute_state_dir(value: str) -> Optional[str]:
    path = Path(value)
    if not path.is_absolute() or ".." in path.parts or path == Path("/"):
        return "'state_dir' must be an absolute path below / without '..'"
    return None


def _http_or_empty(value: str) -> Optional[str]:
    if not value or value.startswith(("http://", "https://")):
        return None
    return "'endpoint_url' must be an http(s) URL or null"


def _four_prefixes(value: dict[str, Any]) -> Optional[str]:
    for name in PREFIX_NAMES:
        prefix = value.get(name, name + "/")
        if not isinstance(prefix, str) or not prefix.strip("/"):
            return f"prefixes.{name} must be a non-empty string"
    return None


def _strings(value: list[Any]) -> Optional[str]:
    return None if all(isinstance(a, str) for a in value) else "pip_extra_args must be a list of strings"


def _installer(value: str) -> Optional[str]:
    return None if value in INSTALLERS else f"'installer' must be auto, uv or pip (got {value!r})"


@dataclass(frozen=True)
class Key:
    """One key of the file: its JSON type, its default (REQUIRED: none; None: derived), and a check.

    ``check`` returns what is wrong with a value, or None.
    """

    name: str
    kind: type
    default: Any = REQUIRED
    check: Optional[Callable[[Any], Optional[str]]] = None

    def read(self, raw: dict[str, Any], path: str) -> Any:
        if self.default is REQUIRED and self.name not in raw:
            raise Failure(f"config {path}: missing key {self.name!r}")
        value = raw.get(self.name)
        if value is None and self.default is not REQUIRED:
            return self.default
        if self.kind is int and isinstance(value, str) and value.strip().isdigit():
            value = int(value)  # a templated config may quote numbers
        if self.kind is int and isinstance(value, bool):
            raise Failure(f"config {path}: {self.name!r} must be an integer")
        if not isinstance(value, self.kind):
            raise Failure(f"config {path}: {self.name!r} must be a {self.kind.__name__}")
        problem = self.check(value) if self.check else None
        if problem:
            raise Failure(f"config {path}: {problem}")
        return value


# Read in this order: the first problem is the one reported.
SCHEMA = (
    Key("bucket", str),
    Key("workdir", str, check=_absolute),
    Key("region", str, "ap-south-1"),
    Key("endpoint_url", str, None, _http_or_empty),
    Key("prefixes", dict, {}, _four_prefixes),
    Key("state_dir", str, "/var/lib/simpletrader", _absolute_state_dir),
    Key("old_state_dir", str, None),  # <parent of workdir>/.simpletrader
    Key("owner", dict, {}),  # {"user", "group"}
    Key("python", str, "/usr/bin/python3.9"),
    Key("lock_file", str, "/run/lock/simpletrader.lock"),
    Key("lock_wait_seconds", int, 60),
    Key("timezone", str, "Asia/Kolkata"),
    Key("closure_script", str, "src/setup/closure_setup.py"),
    Key("closure_timeout_seconds", int, 600),
    Key("uploads", dict, {}),  # {"trade_logs", "ledger"}
    Key("keep_releases", int, 2),
    Key("pip_extra_args", list, [], _strings),
    Key("installer", str, "auto", _installer),
    Key("uv", str, None),
)


@dataclass(frozen=True)
class Config:
    path: str
    bucket: str
    workdir: Path
    region: str
    endpoint_url: Optional[str]
    prefixes: dict[str, str]
    state_dir: Path
    old_state_dir: Path
    user: str
    group: Optional[str]
    python: str
    lock_file: Path
    lock_wait: int
    timezone: str
    closure_script: str
    closure_timeout: int
    trade_logs: str
    ledger: str
    keep_releases: int
    pip_extra_args: list[str]
    installer: str
    uv: Optional[str]

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: str) -> Config:
        """The configuration from the file's JSON object; a Failure names the first bad key."""
        v = {key.name: key.read(raw, path) for key in SCHEMA}
        workdir = Path(v["workdir"])
        prefixes, owner, uploads = v["prefixes"], v["owner"], v["uploads"]
        return cls(
            path=path,
            bucket=v["bucket"],
            workdir=workdir,
            region=v["region"],
            endpoint_url=v["endpoint_url"] or None,
            prefixes={name: prefixes.get(name, DEFAULT_PREFIXES[name]).strip("/") + "/" for name in PREFIX_NAMES},
            state_dir=Path(os.path.normpath(v["state_dir"])),
            old_state_dir=Path(v["old_state_dir"] if v["old_state_dir"] is not None
                               else str(workdir.parent / ".simpletrader")),
            user=owner.get("user") or pwd.getpwuid(os.getuid()).pw_name,
            group=owner.get("group"),
            python=v["python"],
            lock_file=Path(v["lock_file"]),
            lock_wait=v["lock_wait_seconds"],
            timezone=v["timezone"],
            closure_script=v["closure_script"],
            closure_timeout=v["closure_timeout_seconds"],
            trade_logs=str(uploads.get("trade_logs", "trade_logs")).strip("/"),
            ledger=str(uploads.get("ledger", "ledger")).strip("/"),
            keep_releases=max(1, v["keep_releases"]),
            pip_extra_args=v["pip_extra_args"],
            installer=v["installer"],
            uv=v["uv"] or None,
        )

    @property
    def releases(self) -> Path:
        return self.state_dir / "releases"

    @property
    def venvs(self) -> Path:
        return self.state_dir / "venvs"

    @property
    def wheelhouse(self) -> Path:
        return self.state_dir / "wheelhouse"

    @property
    def uv_cache(self) -> Path:
        return self.state_dir / "uv-cache"

    @property
    def ready_file(self) -> Path:
        return self.state_dir / "ready.json"

    def owner_ids(self) -> tuple[int, int]:
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            raise Failure(f"owner user {self.user!r} does not exist on this host") from None
        gid = pw.pw_gid
        if self.group:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                raise Failure(f"owner group {self.group!r} does not exist on this host") from None
        return pw.pw_uid, gid

    def today(self) -> str:
        """Today's date in the exchange's zone (the ready marker's date, the trade logs' directory)."""
        try:
            from zoneinfo import ZoneInfo
        except ImportError:  # pragma: no cover - Python < 3.9
            raise Failure("Python 3.9 or newer is needed (zoneinfo)") from None
        try:
            zone = ZoneInfo(self.timezone)
        except Exception:  # noqa: BLE001 - any lookup problem is a config error
            raise Failure(f"unknown timezone {self.timezone!r} (is tzdata installed?)") from None
        return _dt.datetime.now(zone).date().isoformat()


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise Failure(f"config {path} not found (installed by roles/workspace_sync)") from None
    except (OSError, ValueError) as exc:
        raise Failure(f"config {path} unreadable: {exc}") from None
    if not isinstance(raw, dict):
        raise Failure(f"config {path}: expected a JSON object")
    return Config.from_dict(raw, path)
