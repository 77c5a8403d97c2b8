"""The host's sync / eod / status routine against the emulated bucket."""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from example_release import BUCKET, CODE_DIR, body, do_publish
from simpletrader_workspace import config
from wshelpers import (
    ROOT,
    ROUTINE,
    Host,
    assert_workspace_intact,
    exchange_today,
    put_archive_without_index,
    put_manifest,
    routine_command,
    routine_env,
)


def bucket_keys(s3: Any, prefix: str = "") -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def venv_marker(host: Host) -> Path:
    ready = host.ready()
    assert ready is not None
    return host.state_dir / "venvs" / ready["venv"] / ".simpletrader-complete"


# --------------------------------------------------------------------------- source checks


def test_routine_is_python39_syntax_and_lint_clean() -> None:
    modules = sorted(ROUTINE.glob("*.py"))
    assert {"cli.py", "sync.py", "s3.py", "fsutil.py", "__main__.py"} <= {m.name for m in modules}
    for module in modules:
        ast.parse(module.read_text(), filename=str(module), feature_version=(3, 9))
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff not installed next to the test interpreter")
    proc = subprocess.run(
        [str(ruff), "check", "--target-version", "py39", str(ROUTINE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


# --------------------------------------------------------------------------- a trading day


def test_sync_trade_eod_and_resync(host: Host, s3: Any, published: dict[str, Any]) -> None:
    # A new host: the ledger so far comes from the bucket.
    old_ledger = b"date,symbol,side,quantity,price\n2026-11-02,NSE:INFY,BUY,1,1500.0\n"
    s3.put_object(Bucket=BUCKET, Key="ledger/ledger.csv", Body=old_ledger)
    first = host.run("sync")
    assert first.returncode == 0, first.stdout + first.stderr
    ready = host.ready()
    assert ready is not None
    assert first.result is not None
    assert first.result["release"] == ready["release"] == published["release"]
    assert first.result["venv"] == ready["venv"] and first.result["venv_reused"] is False
    assert first.result["release_dir"] == ready["release_dir"]
    assert first.result["message"] == f"sync: ready release={published['release']} venv={ready['venv']}"
    assert ready["date"] == exchange_today()
    reqs = (CODE_DIR / "requirements.txt").read_bytes()
    assert ready["venv"] == hashlib.sha256(reqs).hexdigest()

    # The workdir is a symlink to the release; secrets are 0600. (Ownership by another user than
    # the one running the routine is checked on real hosts: molecule verify and tests/e2e.)
    assert host.workdir.is_symlink()
    release_dir = Path(os.path.realpath(host.workdir))
    assert release_dir.parent == host.releases and release_dir.name.startswith(published["release"] + "_")
    for secret in ("keys.json", "access_token.txt"):
        st = (host.workdir / secret).stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
    assert (host.workdir / "keys.json").read_bytes() == (ROOT / "example/secrets/keys.json").read_bytes()
    code = "src/setup/setup.py"
    assert (host.workdir / code).read_bytes() == (CODE_DIR / code).read_bytes()
    assert "keys.json has keys: api_key, api_secret, user_id" in first.stdout
    assert (host.workdir / "ledger" / "ledger.csv").read_bytes() == old_ledger
    # The token keeps its publication time, which the cron jobs' freshness guard checks.
    published_at = s3.head_object(Bucket=BUCKET, Key="secrets/access_token.txt")["LastModified"]
    assert abs((host.workdir / "access_token.txt").stat().st_mtime - published_at.timestamp()) < 1
    assert ready["token_published_at"] == published_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "[current, uploaded]" in host.run("status").stdout  # the downloaded ledger needs no upload

    # The venv has the pinned package from the wheelhouse, and the trading jobs run with it.
    six = subprocess.run(
        [ready["python"], "-c", "import six; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert six.stdout.strip() == "1.16.0"
    host.run_job("src/setup/pre_market_setup.py")
    trading = host.run_job("src/setup/setup.py")
    assert "FAKE" not in trading.stdout
    today = exchange_today()
    assert (host.workdir / "trade_logs" / today / "trades.csv").is_file()

    status = host.run("status")
    assert status.returncode == 0
    assert "NOT uploaded" in status.stdout
    assert status.result is not None
    assert (status.result["release"], status.result["date"], status.result["fresh"]) == (published["release"], today,
                                                                                      True)
    assert status.last == f"status: ready marker release={published['release']} date={today} (today)"

    # End of day: closure runs, trade logs and ledger land in the bucket.
    eod = host.run("eod")
    assert eod.returncode == 0, eod.stdout + eod.stderr
    assert eod.result is not None
    assert (eod.result["uploaded"], eod.result["already_uploaded"], eod.result["date"]) == (3, 0, today)
    assert eod.last == f"eod: uploaded 3 files (logs/{today}/, ledger/)"
    assert bucket_keys(s3, "logs/") == {f"logs/{today}/trades.csv", f"logs/{today}/summary.txt"}
    trades = host.workdir / "trade_logs" / today / "trades.csv"
    assert body(s3, f"logs/{today}/trades.csv") == trades.read_bytes()
    assert b"trades 3" in body(s3, f"logs/{today}/summary.txt")
    assert body(s3, "ledger/ledger.csv") == (host.workdir / "ledger" / "ledger.csv").read_bytes()
    marker = json.loads((host.workdir / ".simpletrader-uploaded.json").read_text())
    assert set(marker["files"]) == {
        f"trade_logs/{today}/trades.csv",
        f"trade_logs/{today}/summary.txt",
        "ledger/ledger.csv",
    }
    again = host.run("eod")
    assert again.returncode == 0 and again.result is not None
    assert (again.result["uploaded"], again.result["already_uploaded"]) == (0, 3)

    # Next morning: same requirements, so the venv is reused, not rebuilt; the ledger carries over.
    marker_before = venv_marker(host).read_text()
    second = host.run("sync")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.result is not None and second.result["venv_reused"] is True
    assert "reusing virtualenv" in second.stdout and "building virtualenv" not in second.stdout
    assert venv_marker(host).read_text() == marker_before
    new_release = Path(os.path.realpath(host.workdir))
    assert new_release != release_dir and release_dir.is_dir()  # keep_releases=2
    ledger = Path("ledger", "ledger.csv")
    assert (new_release / ledger).read_bytes() == (release_dir / ledger).read_bytes()
    # The same exchange day (the clock is real): today's trade logs carry over, known to be uploaded already.
    assert [p.name for p in (new_release / "trade_logs").iterdir()] == [today]
    for name in ("trades.csv", "summary.txt"):
        carried = new_release / "trade_logs" / today / name
        assert carried.read_bytes() == (release_dir / "trade_logs" / today / name).read_bytes()
    assert f"{new_release.name} (venv {ready['venv'][:12]}) [current, uploaded]" in host.run("status").stdout
    assert (new_release / "ledger" / "ledger.csv").read_bytes().startswith(old_ledger)


# --------------------------------------------------------------------------- failures keep the last workspace


def test_hash_mismatch_and_missing_object_keep_previous_workspace(
    host: Host, s3: Any, published: dict[str, Any]
) -> None:
    assert host.run("sync").returncode == 0
    before = host.ready()
    assert before is not None

    # The bucket's code archive no longer matches the manifest. Without a code
    # index (a manifest of an older publish) the whole archive is downloaded and
    # checked; the index path is tested in test_index_path_refuses_a_tampered_member.
    put_manifest(s3, {k: v for k, v in published.items() if k != "code_index"})
    code_key = next(o["key"] for o in published["objects"] if o["role"] == "code")
    original = body(s3, code_key)
    s3.put_object(Bucket=BUCKET, Key=code_key, Body=original[:-1] + bytes([original[-1] ^ 1]))
    bad = host.run("sync")
    assert bad.returncode != 0
    assert bad.last.startswith("sync: FAILED sha256 mismatch for " + code_key)
    assert_workspace_intact(host, before)
    assert not (host.state_dir / "staging.partial").exists()

    # An object the manifest lists is gone.
    s3.put_object(Bucket=BUCKET, Key=code_key, Body=original)
    s3.delete_object(Bucket=BUCKET, Key="secrets/keys.json")
    missing = host.run("sync")
    assert missing.returncode != 0
    assert missing.last.startswith("sync: FAILED object secrets/keys.json listed in the manifest is missing")
    assert_workspace_intact(host, before)

    # A size mismatch is refused too.
    s3.put_object(Bucket=BUCKET, Key="secrets/keys.json", Body=b'{"api_key": "x"}')
    short = host.run("sync")
    assert short.returncode != 0 and "size mismatch for secrets/keys.json" in short.last
    assert_workspace_intact(host, before)


def test_manifest_problems_are_refused(host: Host, s3: Any) -> None:
    missing = host.run("sync")
    assert missing.returncode != 0
    assert missing.last == (
        f"sync: FAILED no manifest at s3://{BUCKET}/deploy/manifest.json; run `provision publish` first"
    )
    put_manifest(s3, {"version": 2, "release": "x", "objects": []})
    future = host.run("sync")
    assert future.returncode != 0 and "manifest version 2 is not supported" in future.last
    assert host.ready() is None and not host.workdir.exists()


def test_unsafe_code_archive_is_refused(host: Host, s3: Any, published: dict[str, Any]) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../escape.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    # No code index (an older publish, or a hand-made manifest): the archive is extracted, with its guards.
    put_archive_without_index(s3, published, gzip.compress(raw.getvalue()))
    result = host.run("sync")
    assert result.returncode != 0
    assert "unsafe path" in result.last
    assert not (host.releases / "escape.txt").exists() and not (host.base / "escape.txt").exists()
    assert host.ready() is None


def test_pip_failure_keeps_previous_workspace(
    host: Host, s3: Any, wheelhouse: Path, tmp_path: Path, published: dict[str, Any]
) -> None:
    assert host.run("sync").returncode == 0
    before = host.ready()
    assert before is not None
    bad_code = tmp_path / "code"
    subprocess.run(["cp", "-r", str(CODE_DIR), str(bad_code)], check=True)
    (bad_code / "requirements.txt").write_text("six==1.16.0\nno-such-package-simpletrader==9.9\n")
    do_publish(s3, wheelhouse, code_dir=bad_code, requirements=bad_code / "requirements.txt")
    result = host.run("sync")
    assert result.returncode != 0
    assert result.last.startswith("sync: FAILED uv pip install from the wheelhouse failed")
    assert "no-such-package-simpletrader" in result.stdout
    assert_workspace_intact(host, before)
    host.overrides["installer"] = "pip"
    result = host.run("sync")
    assert result.returncode != 0
    assert result.last.startswith("sync: FAILED pip install from the wheelhouse failed")
    assert_workspace_intact(host, before)
    bad_hash = hashlib.sha256((bad_code / "requirements.txt").read_bytes()).hexdigest()
    assert not (host.state_dir / "venvs" / bad_hash).exists()
    assert sorted(p.name for p in (host.state_dir / "venvs").iterdir()) == [before["venv"]]


# --------------------------------------------------------------------------- eod and config details


def test_eod_on_a_plain_workdir_uploads_even_when_closure_fails(host: Host, s3: Any) -> None:
    today = exchange_today()
    (host.workdir / "trade_logs" / today).mkdir(parents=True)
    (host.workdir / "trade_logs" / today / "trades.csv").write_text("t\n")
    (host.workdir / "src" / "setup").mkdir(parents=True)
    (host.workdir / "src" / "setup" / "closure_setup.py").write_text("raise SystemExit(3)\n")
    result = host.run("eod")
    assert result.returncode != 0
    assert result.last == f"eod: FAILED closure script exited 3; uploaded 1 files (logs/{today}/, ledger/)"
    assert result.result is not None and (result.result["ok"], result.result["uploaded"]) == (False, 1)
    assert body(s3, f"logs/{today}/trades.csv") == b"t\n"
    assert (host.workdir / ".simpletrader-uploaded.json").is_file()

    # A configured closure script the workspace lacks: a warning at the end of the last line (the stop
    # function lists it in its notification) and in the result; the upload runs anyway.
    (host.workdir / "src" / "setup" / "closure_setup.py").unlink()
    (host.workdir / "trade_logs" / today / "orders.csv").write_text("o\n")
    again = host.run("eod")
    assert again.returncode == 0
    assert "WARNING: closure script src/setup/closure_setup.py is not in the workspace" in again.stdout
    assert again.last == (f"eod: uploaded 1 files (logs/{today}/, ledger/); 1 already uploaded; "
                          "WARNING closure script src/setup/closure_setup.py is missing")
    assert again.result is not None and again.result["ok"] is True
    assert again.result["warnings"] == ["closure script src/setup/closure_setup.py is missing"]
    assert body(s3, f"logs/{today}/orders.csv") == b"o\n"

    # No closure script configured: nothing to warn of.
    host.overrides["closure_script"] = ""
    none = host.run("eod")
    assert none.returncode == 0 and "no closure script configured" in none.stdout
    assert none.last == f"eod: uploaded 0 files (logs/{today}/, ledger/); 2 already uploaded"
    assert none.result is not None and none.result["warnings"] == []


def test_eod_uploads_the_recent_job_logs_once_and_again_when_they_changed(host: Host, s3: Any,
                                                                           tmp_path: Path) -> None:
    today, yesterday, long_ago = exchange_today(), exchange_today(-1), exchange_today(-10)
    (host.workdir / "trade_logs" / today).mkdir(parents=True)
    (host.workdir / "trade_logs" / today / "trades.csv").write_text("t\n")
    logs = host.state_dir / "logs"  # the trading user's directory in root's state dir
    logs.mkdir(parents=True)
    (logs / f"trading-{today}.log").write_text("trading ran\n")
    (logs / f"pre-market-setup-{today}.log").write_text("pre-market ran\n")
    (logs / f"trading-{yesterday}.log").write_text("yesterday, whose eod did not run\n")
    (logs / f"trading-{long_ago}.log").write_text("outside the window\n")
    (logs / "notes.txt").write_text("not a job log\n")
    canary = tmp_path / "canary.txt"
    canary.write_text("root's secret\n")
    (logs / f"planted-{today}.log").symlink_to(canary)
    host.overrides["closure_script"] = ""

    first = host.run("eod")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.last == (f"eod: uploaded 1 files (logs/{today}/, ledger/); 3 job logs (logs/{today}/jobs/); "
                          f"WARNING job logs not uploaded, not regular files: planted-{today}.log")
    assert first.result is not None
    assert (first.result["job_logs_uploaded"], first.result["job_logs_already_uploaded"]) == (3, 0)
    assert bucket_keys(s3, "logs/") == {
        f"logs/{today}/trades.csv", f"logs/{today}/jobs/trading-{today}.log",
        f"logs/{today}/jobs/pre-market-setup-{today}.log", f"logs/{yesterday}/jobs/trading-{yesterday}.log"}
    assert body(s3, f"logs/{today}/jobs/trading-{today}.log") == b"trading ran\n"
    marker = json.loads((host.state_dir / "job-logs-uploaded.json").read_text())
    assert sorted(marker["files"]) == [f"pre-market-setup-{today}.log", f"trading-{yesterday}.log",
                                       f"trading-{today}.log"]
    # Job logs are no release's trade data: the release is confirmed as before.
    assert "[current, uploaded]" in host.run("status").stdout

    (logs / f"planted-{today}.log").unlink()
    again = host.run("eod")
    assert again.last == f"eod: uploaded 0 files (logs/{today}/, ledger/); 1 already uploaded"
    assert again.result is not None
    assert (again.result["job_logs_uploaded"], again.result["job_logs_already_uploaded"]) == (0, 3)

    # A job wrote after the eod of its day: the next eod uploads the log again.
    with open(logs / f"trading-{today}.log", "a") as fh:
        fh.write("simpletrader-job trading: exit 1\n")
    later = host.run("eod")
    assert later.result is not None
    assert (later.result["job_logs_uploaded"], later.result["job_logs_already_uploaded"]) == (1, 2)
    assert body(s3, f"logs/{today}/jobs/trading-{today}.log") == b"trading ran\nsimpletrader-job trading: exit 1\n"


def test_a_job_log_growing_while_it_is_read_is_uploaded_as_read(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from simpletrader_workspace import fsutil, joblogs

    cfg = config.Config.from_dict({"bucket": BUCKET, "workdir": str(tmp_path / "w"),
                                   "state_dir": str(tmp_path / "state")}, "test")
    (tmp_path / "state" / "logs").mkdir(parents=True)
    log = tmp_path / "state" / "logs" / f"trading-{exchange_today()}.log"
    log.write_bytes(b"a" * (fsutil.CHUNK + 10))
    real_read = os.read
    reads: list[int] = []

    def read_while_the_job_writes(fd: int, n: int) -> bytes:
        block = real_read(fd, n)
        reads.append(len(block))
        if len(reads) == 1:
            with open(log, "ab") as fh:  # the job appends between two reads
                fh.write(b"more\n")
        return block

    class Recorder:
        def __init__(self) -> None:
            self.puts: list[tuple[str, bytes, str]] = []

        def upload(self, key: str, fh: Any, sha256: str) -> None:
            self.puts.append((key, fh.read(), sha256))

    bucket = Recorder()
    monkeypatch.setattr(fsutil.os, "read", read_while_the_job_writes)
    done = joblogs.upload_job_logs(cfg, bucket, exchange_today())  # type: ignore[arg-type]
    monkeypatch.setattr(fsutil.os, "read", real_read)
    [(key, data, digest)] = bucket.puts
    assert done.uploaded == 1 and key == f"SimpleTraderLogs/{exchange_today()}/jobs/{log.name}"
    assert hashlib.sha256(data).hexdigest() == digest  # what was uploaded is what was hashed
    assert data == b"a" * (fsutil.CHUNK + 10) + b"more\n"  # read to the end as it was then
    again = joblogs.upload_job_logs(cfg, bucket, exchange_today())  # type: ignore[arg-type]
    assert again.uploaded == 0 and again.already == 1
    with open(log, "ab") as fh:  # the wrapper's exit line, after the eod
        fh.write(b"exit 1\n")
    last = joblogs.upload_job_logs(cfg, bucket, exchange_today())  # type: ignore[arg-type]
    assert last.uploaded == 1 and bucket.puts[-1][1] == log.read_bytes()  # changed since: uploaded again


def test_eod_without_a_workspace(host: Host, s3: Any) -> None:
    result = host.run("eod")
    assert result.returncode != 0
    assert result.last == f"eod: FAILED no workspace at {host.workdir}; nothing to upload"


def test_config_errors_are_one_line(host: Host, tmp_path: Path) -> None:
    host.overrides["endpoint_url"] = "localhost:5000"
    bad = host.run("sync")
    assert bad.returncode != 0 and bad.stderr == ""
    assert (
        bad.last == f"sync: FAILED config {host.config_path}: 'endpoint_url' must be an http(s) URL or null"
    )

    host.overrides.update(endpoint_url=host.endpoint, timezone="Mars/Olympus_Mons")
    zone = host.run("sync")
    assert zone.returncode != 0
    assert zone.last == "sync: FAILED unknown timezone 'Mars/Olympus_Mons' (is tzdata installed?)"
    assert not host.state_dir.exists()

    host.overrides.update(
        endpoint_url=None, keep_releases="2", lock_wait_seconds="1", timezone="Asia/Kolkata"
    )
    status = host.run("status")
    assert status.returncode == 0, status.stdout
    assert status.last == f"status: not ready (no ready marker at {host.state_dir / 'ready.json'})"

    missing = tmp_path / "none.json"
    proc = subprocess.run(
        routine_command("sync", "--config", str(missing)),
        capture_output=True,
        text=True,
        env=routine_env(),
        check=False,
    )
    assert proc.returncode != 0 and proc.stderr == ""
    assert (
        proc.stdout.strip() == f"sync: FAILED config {missing} not found (installed by roles/workspace_sync)"
    )
    (tmp_path / "partial.json").write_text('{"workdir": "/x"}')
    proc = subprocess.run(
        routine_command("eod", "--config", str(tmp_path / "partial.json")),
        capture_output=True,
        text=True,
        env=routine_env(),
        check=False,
    )
    assert proc.stdout.strip().endswith("missing key 'bucket'")


def test_a_result_file_that_cannot_be_written_changes_nothing_else(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    unwritable = tmp_path / "no-such-dir" / "result.json"
    proc = subprocess.run(
        routine_command("status", "--config", str(missing), "--result-json", str(unwritable)),
        capture_output=True,
        text=True,
        env=routine_env(),
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == f"status: FAILED config {missing} not found (installed by roles/workspace_sync)\n"
    assert proc.stderr.startswith(f"status: cannot write the result file {unwritable}: ")
    assert not unwritable.parent.exists()


def test_without_token_check_no_token_file_is_needed_and_the_host_still_syncs(
        s3: Any, wheelhouse: Path, host: Host, tmp_path: Path) -> None:
    """host.token_check: off (a program that logs in by itself): no token file, missing or empty, is an error."""
    lines: list[str] = []
    for absent in (tmp_path / "no-such-token.txt", tmp_path / "empty-token.txt"):
        if absent.name.startswith("empty"):
            absent.write_text("\n")
        manifest = do_publish(s3, wheelhouse, token_file=absent, token_required=False, log=lines.append)
        token = [o for o in manifest["objects"] if o["role"] == "token"]
        assert token == [{"role": "token", "key": "secrets/access_token.txt", "size": 0,
                          "sha256": hashlib.sha256(b"").hexdigest()}]  # no published_at: nothing was published
        assert body(s3, "secrets/access_token.txt") == b""
    assert ("publish: no access token (host.token_check: off, and no token file): secrets/access_token.txt is "
            "empty") in lines
    # The host's sync takes the manifest as it is (it needs exactly one token entry).
    assert host.run("sync").returncode == 0
    assert (host.workdir / "access_token.txt").read_bytes() == b""
    # With the check on, the same missing file stops publish before any AWS call: test_prov_publish.py.
