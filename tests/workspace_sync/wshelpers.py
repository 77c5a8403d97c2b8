"""Helpers for the workspace routine's tests (fixtures are in conftest.py and tests/conftest.py).

The routine (the package ``roles/workspace_sync/files/simpletrader_workspace``)
runs as a subprocess, ``python -m simpletrader_workspace`` as on the host,
against the ``moto`` emulator; its state lives in a temporary directory and its
owner is the current user. Tests of single functions import its modules
(pytest puts ``roles/workspace_sync/files`` on the path).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from example_release import BUCKET, PREFIXES, SECRET_VALUES

ROOT = Path(__file__).resolve().parents[2]
# The directory that holds the package (and its pyproject.toml), and the package itself.
ROUTINE_PROJECT = ROOT / "roles" / "workspace_sync" / "files"
ROUTINE = ROUTINE_PROJECT / "simpletrader_workspace"


def exchange_today(offset_days: int = 0) -> str:
    now = dt.datetime.now(ZoneInfo("Asia/Kolkata")).date()
    return (now + dt.timedelta(days=offset_days)).isoformat()


def routine_command(*args: str) -> list[str]:
    """The routine as the host's wrapper runs it: the package as a module (PYTHONPATH: routine_env)."""
    return [sys.executable, "-m", "simpletrader_workspace", *args]


def routine_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROUTINE_PROJECT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    # The --result-json document (docs/CONTRACTS.md); None when the routine wrote none.
    result: dict[str, Any] | None = None

    @property
    def last(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""


@dataclass
class Host:
    """A fake trading host: a workdir, a state dir, a lock and the routine's config."""

    base: Path
    endpoint: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return Path(self.overrides.get("workdir") or self.base / "projects" / "SimpleTrader")

    @property
    def state_dir(self) -> Path:
        """Root's directory (the host's /var/lib/simpletrader), apart from the trading user's projects."""
        return Path(self.overrides.get("state_dir") or self.base / "state")

    @property
    def releases(self) -> Path:
        return self.state_dir / "releases"

    @property
    def lock_file(self) -> Path:
        return self.base / "lock" / "simpletrader.lock"

    @property
    def config_path(self) -> Path:
        return self.base / "workspace.json"

    def config(self) -> dict[str, Any]:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        cfg: dict[str, Any] = {
            "region": "ap-south-1",
            "bucket": BUCKET,
            "endpoint_url": self.endpoint,
            "prefixes": PREFIXES,
            "workdir": str(self.workdir),
            "state_dir": str(self.state_dir),
            "owner": {"user": user},
            "python": sys.executable,
            "lock_file": str(self.lock_file),
            "lock_wait_seconds": 1,
            "timezone": "Asia/Kolkata",
            "closure_script": "src/setup/closure_setup.py",
            "closure_timeout_seconds": 60,
            "uploads": {"trade_logs": "trade_logs", "ledger": "ledger"},
            "keep_releases": 2,
            "pip_extra_args": [],
        }
        cfg.update(self.overrides)
        return cfg

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config(), indent=1))

    def result_path(self, cmd: str) -> Path:
        return self.base / f"result-{cmd}.json"

    def command(self, cmd: str, result: Path | None = None) -> list[str]:
        self.write_config()
        result = result or self.result_path(cmd)
        return routine_command(cmd, "--config", str(self.config_path), "--result-json", str(result))

    def env(self, **extra: str) -> dict[str, str]:
        env = routine_env(**extra)
        # The endpoint comes from the config file, as on a host run by SSM.
        env.pop("AWS_ENDPOINT_URL", None)
        return env

    def run(self, cmd: str, timeout: float = 180, **extra_env: str) -> Run:
        proc = subprocess.run(
            self.command(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**extra_env),
            check=False,
        )
        path = self.result_path(cmd)
        result = Run(proc.returncode, proc.stdout, proc.stderr, json.loads(path.read_text()) if path.exists() else None)
        assert_no_secrets(result.stdout + result.stderr)
        check_result(result, cmd)
        return result

    def spawned_result_path(self, cmd: str) -> Path:
        """Where a spawned run writes its result (apart from the runs beside it)."""
        return self.base / f"result-{cmd}-spawned.json"

    def spawn(self, cmd: str, **extra_env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(cmd, self.spawned_result_path(cmd)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(**extra_env),
        )

    def ready(self) -> dict[str, Any] | None:
        path = self.state_dir / "ready.json"
        return json.loads(path.read_text()) if path.exists() else None

    def release_dirs(self) -> list[Path]:
        return sorted(p for p in self.releases.iterdir()) if self.releases.exists() else []

    def run_job(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run an example trading job the way the cron job does (venv python, cwd, PYTHONPATH)."""
        ready = self.ready()
        assert ready is not None
        env = dict(os.environ, PYTHONPATH=str(self.workdir / "src"))
        return subprocess.run(
            [ready["python"], str(self.workdir / script)],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )


def assert_no_secrets(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text, "a secret value appeared in the routine's output"


def put_manifest(s3: Any, manifest: dict[str, Any]) -> None:
    s3.put_object(Bucket=BUCKET, Key="deploy/manifest.json", Body=json.dumps(manifest).encode())


def assert_workspace_intact(host: Host, ready_before: dict[str, Any]) -> None:
    assert host.ready() == ready_before
    assert host.workdir.is_symlink()
    assert Path(os.path.realpath(host.workdir)) == Path(ready_before["release_dir"])
    assert (host.workdir / "src" / "setup" / "setup.py").is_file()
    assert not [p for p in host.release_dirs() if p.name.endswith(".partial")]


def check_result(run: Run, cmd: str) -> None:
    """The result file tells what the last line and the exit code tell (docs/CONTRACTS.md)."""
    assert run.result is not None, f"no result file: {run.stdout[-500:]}{run.stderr[-500:]}"
    assert run.result["version"] == 1 and run.result["command"] == cmd
    assert run.result["message"] == run.last
    assert run.result["exit_code"] == run.returncode
    assert run.result["ok"] is (run.returncode == 0)


def put_archive_without_index(s3: Any, published: dict[str, Any], archive: bytes) -> None:
    """Replace the release's code archive and drop the code index from the manifest (as an older publish
    wrote it), so that sync downloads and extracts the whole archive."""
    manifest = {k: v for k, v in published.items() if k != "code_index"}
    manifest["objects"] = [dict(o) for o in published["objects"]]
    code = next(o for o in manifest["objects"] if o["role"] == "code")
    s3.put_object(Bucket=BUCKET, Key=code["key"], Body=archive)
    code.update(size=len(archive), sha256=hashlib.sha256(archive).hexdigest())
    put_manifest(s3, manifest)


def put_code_index(s3: Any, published: dict[str, Any], doc: dict[str, Any]) -> None:
    """Replace the code index with ``doc`` and point the manifest at it with a matching size and sha256."""
    ref = published["code_index"]
    data = json.dumps(doc).encode()
    s3.put_object(Bucket=BUCKET, Key=ref["key"], Body=data)
    put_manifest(s3, dict(published, code_index=dict(ref, size=len(data), sha256=hashlib.sha256(data).hexdigest())))


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything about a tree that root could change: names, kinds, modes, owners, contents, link targets."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        key = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[key] = ("link", os.readlink(path), st.st_uid)
        elif stat.S_ISDIR(st.st_mode):
            out[key] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        else:
            out[key] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns,
                        hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def canary(tmp_path: Path) -> Path:
    """A directory and a file of someone else's that root must never touch (the outside a test looks at)."""
    where = tmp_path / "canary"
    where.mkdir(mode=0o700)
    where.chmod(0o700)
    (where / "precious.txt").write_text("precious\n")
    (where / "precious.txt").chmod(0o600)
    return where
