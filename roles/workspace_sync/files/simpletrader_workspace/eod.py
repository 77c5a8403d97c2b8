"""``simpletrader-workspace eod``: the closure script, then the day's trade data and the jobs' logs to the bucket.

The closure script's failure is reported but does not stop the upload; the
upload's failure leaves the files on the host for the next sync to upload. A
configured closure script missing from the workspace is a warning: the upload
runs, and the last line ends ``; WARNING closure script <path> is missing``
(the stop function lists it in its notification). The cron jobs' logs go up
after the trade data (``joblogs``); their failure is a warning too.
Only a release of this state dir is uploaded from: a plain workdir not yet
synced (a host of the original CDK app) is adopted as a release first, as
sync does, and the state of earlier versions is moved in first.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Any, Optional

from . import joblogs, s3, statedir, workdir
from .config import Config
from .errors import Failure
from .fsutil import Beneath, is_sha256
from .migrate import migrate
from .output import Outcome, say
from .release import current_release, read_meta
from .upload import scan, upload_data


def workspace_python(cfg: Config, root: Path) -> str:
    """The python of the release's virtualenv in root's venvs/ (by the name its metadata gives), else ``python``."""
    venv = read_meta(root).get("venv")
    python = cfg.venvs / str(venv) / "bin" / "python"
    if is_sha256(venv) and python.exists():
        return str(python)
    return cfg.python


def closure_missing(cfg: Config, root: Path) -> Optional[str]:
    """The warning for a configured closure script that the workspace lacks, else None."""
    if not cfg.closure_script:
        say("eod", "no closure script configured")
        return None
    if (root / cfg.closure_script).is_file():
        return None
    say("eod", f"WARNING: closure script {cfg.closure_script} is not in the workspace; uploading without it")
    return f"closure script {cfg.closure_script} is missing"


#: How many of the closure log's last lines a failed closure script's eod shows (each cut to 200 characters).
TAIL_LINES = 10


def closure_log(cfg: Config, date: str) -> Optional[Path]:
    """Where the closure script's output goes: ``closure-<date>.log`` beside the jobs' logs, uploaded with them.

    None when that directory is missing or not a plain one (the output then goes to eod's own, as the SSM
    command's output). Kept out of eod's output, a chatty script cannot push eod's last line, which the stop
    function reads, past the 24,000 characters SSM returns.
    """
    directory = joblogs.log_dir(cfg)
    try:
        is_dir = stat.S_ISDIR(os.lstat(str(directory)).st_mode)
    except OSError:
        return None
    return directory / f"closure-{date}.log" if is_dir else None


def log_tail(path: Path) -> list[str]:
    """The last lines of a log the owner user writes: read as root without following a link."""
    beneath = Beneath(path.parent)
    try:
        fd = beneath.open_file(path.name)
    except OSError:
        return []
    finally:
        beneath.close()
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - 8192), os.SEEK_SET)
        text = os.read(fd, 8192).decode("utf-8", "replace")
    finally:
        os.close(fd)
    return [line[:200] for line in text.splitlines()[-TAIL_LINES:]]


def run_closure(cfg: Config, root: Path, date: str) -> Optional[str]:
    """Run the closure script (it exists); returns a problem description or None."""
    python = workspace_python(cfg, root)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(cfg.workdir / "src")
    kwargs: dict[str, Any] = {}
    if os.geteuid() == 0:
        uid, gid = cfg.owner_ids()
        if uid != 0:
            kwargs.update(user=uid, group=gid, extra_groups=[])
            env.update(HOME=pwd.getpwuid(uid).pw_dir, USER=cfg.user, LOGNAME=cfg.user)
    argv = [python, str(cfg.workdir / cfg.closure_script)]
    log = closure_log(cfg, date)
    if log is not None:
        # The owner's own shell opens the log, as cron's do for the jobs': root writes nothing there.
        env["ST_CLOSURE_LOG"] = str(log)
        argv = ["/bin/sh", "-c", 'exec "$0" "$@" >>"$ST_CLOSURE_LOG" 2>&1', *argv]
    say("eod", f"running closure script {cfg.closure_script} (timeout {cfg.closure_timeout}s"
               + (f"; its output goes to {log}, uploaded with the job logs)" if log else ")"))
    try:
        proc = subprocess.run(
            argv,
            cwd=str(cfg.workdir),
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=cfg.closure_timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        problem = f"closure script timed out after {cfg.closure_timeout}s"
    except OSError as exc:
        return f"closure script could not start: {exc}"
    else:
        if proc.returncode == 0:
            return None
        problem = f"closure script exited {proc.returncode}"
    if log is not None:
        for line in log_tail(log):
            say("eod", f"closure | {line}")
    return problem


def upload_job_logs(cfg: Config, bucket: s3.Bucket, date: str, warnings: list[str]) -> joblogs.Uploaded:
    """The jobs' logs after the trade data; a failure is a warning (the next eod tries again), not eod's."""
    try:
        jobs = joblogs.upload_job_logs(cfg, bucket, date)
    except s3.aws_errors() + (OSError,) as exc:
        say("eod", f"WARNING: uploading the job logs failed: {s3.describe(exc)}")
        warnings.append(f"job logs not uploaded ({s3.describe(exc)}); the next eod tries again")
        return joblogs.Uploaded()
    if jobs.skipped:
        warnings.append(f"job logs not uploaded, not regular files: {', '.join(jobs.skipped)}")
    return jobs


def workspace(cfg: Config) -> Path:
    """The release to upload from: the current one (a plain workdir not synced yet is adopted as one first)."""
    workdir.adopt_legacy(cfg, "eod")
    root = current_release(cfg)
    if root is not None:
        return root
    link = workdir.read_link(cfg)
    if link is not None:
        raise Failure(
            f"workdir {cfg.workdir} points at {link}, not at a release in "
            f"{cfg.releases}; nothing uploaded. Run sync to restore it (trade data of every release "
            "is uploaded first)"
        )
    raise Failure(f"no workspace at {cfg.workdir}; nothing to upload")


def run(cfg: Config) -> Outcome:
    statedir.prepare(cfg)
    moved = migrate(cfg, "eod")
    if moved:
        say("eod", moved)
    root = workspace(cfg)
    date = cfg.today()
    warnings: list[str] = []
    missing = closure_missing(cfg, root)
    if missing:
        warnings.append(missing)
    problem = None if missing or not cfg.closure_script else run_closure(cfg, root, date)
    if problem:
        say("eod", f"WARNING: {problem}; uploading anyway")
    bucket = s3.Bucket(s3.client(cfg), cfg.bucket)
    today_dir = root / cfg.trade_logs / date
    if not today_dir.is_dir() or today_dir.is_symlink() or today_dir.parent.is_symlink():
        say("eod", f"no trade logs for {date} in {today_dir.parent}")
    files, left = scan(cfg, root)  # one walk: what is uploaded, and what never is
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        say("eod", f"WARNING: not uploading {shown}: links are not followed, and only regular files are uploaded")
        warnings.append(f"trade data not uploaded, links or not regular files: {shown}")
    try:
        uploaded, skipped = upload_data(cfg, bucket, root, files=files)
    except s3.aws_errors() as exc:
        raise Failure(
            f"upload to s3://{cfg.bucket} failed: {s3.describe(exc)}; the files stay on the host "
            "and the next sync uploads them"
        ) from None
    except OSError as exc:
        raise Failure(
            f"reading the trade data under {root} failed: {exc}; the files stay on the host "
            "and the next sync uploads them"
        ) from None
    jobs = upload_job_logs(cfg, bucket, date, warnings)
    summary = f"uploaded {uploaded} files ({cfg.prefixes['logs']}{date}/, {cfg.prefixes['ledger']})"
    if skipped:
        summary += f"; {skipped} already uploaded"
    if jobs.uploaded:
        summary += f"; {jobs.uploaded} job logs ({cfg.prefixes['logs']}{date}/jobs/)"
    summary += "".join(f"; WARNING {w}" for w in warnings)
    counts = {"date": date, "uploaded": uploaded, "already_uploaded": skipped, "job_logs_uploaded": jobs.uploaded,
              "job_logs_already_uploaded": jobs.already, "warnings": warnings}
    if problem:
        raise Failure(f"{problem}; {summary}", **counts)
    return Outcome(summary, counts)
