"""One whole trading day on the local default, the way a trader's day runs.

The emulator stands in for AWS and a Debian 11 test host for the EC2
instance. Nothing here is special to the product: the same `provision`,
playbooks, host routines and Lambda handlers run as on AWS. The three things no
emulator does are played here, openly:

- the SSM agent: when the Lambda asks for a command's result, the document it
  sent is read back from the emulator (only the stack's own two are accepted),
  its commands are run on the test host over SSH, and their real exit code
  and output become the invocation's result;
- the Session Manager tunnel: Ansible finds the instance through the product's
  dynamic inventory and connects through its ProxyCommand, whose command alone
  is swapped (``ST_TUNNEL_COMMAND``) for ``devtools/tunnel.py``, which carries
  the SSH connection to the test host;
- cron and EventBridge firing: the jobs run now, with the command line, user
  and environment from the host's crontab; the handlers are invoked with the
  scheduled event EventBridge would send.

`python -m devtools.demo` runs it and prints a report; `tests/e2e` asserts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3

from devtools import localaws

ROOT = Path(__file__).resolve().parent.parent
TESTHOST = ROOT / "tests" / "hosts" / "testhost"
BIN = Path(sys.executable).parent
IST = ZoneInfo("Asia/Kolkata")
HOST_JOB_LOGS = "/var/lib/simpletrader/logs/ on the host"
WHEEL_CACHE = Path(os.environ.get("ST_WHEEL_CACHE", "/var/cache/simpletrader/wheels"))


class DayFailed(RuntimeError):
    pass


# --------------------------------------------------------------------------- report


@dataclass
class Step:
    name: str
    started: float
    seconds: float = 0.0
    ok: bool = True
    detail: str = ""
    look: str = ""


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    echo: Callable[[str], None] = print

    @contextlib.contextmanager
    def step(self, name: str, look: str = "") -> Iterator[Step]:
        st = Step(name, time.monotonic() - self.t0, look=look)
        self.steps.append(st)
        self.echo(f"[{st.started:6.1f}s] {name} ...")
        t = time.monotonic()
        try:
            yield st
        except BaseException as exc:
            st.ok = False
            text = str(exc).strip()
            st.detail = st.detail or (text.splitlines()[0][:200] if text else type(exc).__name__)
            raise
        finally:
            st.seconds = time.monotonic() - t
            mark = "ok" if st.ok else "FAILED"
            self.echo(f"          {mark} in {st.seconds:.1f}s{': ' + st.detail if st.detail else ''}")

    def render(self) -> str:
        lines = ["", "The trading day, step by step:", ""]
        width = max((len(s.name) for s in self.steps), default=10)
        for s in self.steps:
            mark = "ok " if s.ok else "FAIL"
            lines.append(f"  {mark} {s.started:6.1f}s +{s.seconds:5.1f}s  {s.name:<{width}}  {s.detail}")
            if s.look:
                lines.append(f"  {'':4} {'':16}  {'':<{width}}  look: {s.look}")
        lines.append("")
        ok = all(s.ok for s in self.steps)
        lines.append(f"{'All steps succeeded' if ok else 'Some steps failed'} in {time.monotonic() - self.t0:.0f}s.")
        return "\n".join(lines)


# --------------------------------------------------------------------------- processes


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT, check: bool = True,
        log: Path | None = None, timeout: float = 1800,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout, input=input_text)
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}\n[exit {proc.returncode}]\n\n")
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise DayFailed(f"{shlex.join(cmd[:4])} ... exited {proc.returncode}:\n{tail}")
    return proc


# --------------------------------------------------------------------------- the test host


@dataclass
class Host:
    name: str
    ip: str
    gateway: str
    key: str

    @classmethod
    def up(cls, name: str) -> Host:
        # Always a fresh host: one of that name left up by an interrupted run holds its half-done state.
        data = json.loads(run([str(TESTHOST), "up", name, "--fresh"], timeout=900).stdout)
        return cls(name, data["ip"], data["gateway"], data["key"])

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                f"ec2-user@{self.ip}"]

    def sh(self, script: str, *, check: bool = True, log: Path | None = None,
           timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the host as ec2-user (prefix `sudo` for root)."""
        return run([*self.ssh_argv(), script], check=check, log=log, timeout=timeout)

    def down(self) -> None:
        run([str(TESTHOST), "down", self.name], check=False)


# --------------------------------------------------------------------------- playing the SSM agent


class SsmAgent:
    """Stands in for the SSM agent on one instance, mapped to a test host.

    Registered on the default boto3 session (the one the handlers' clients
    come from): when a handler asks GetCommandInvocation for a command, the
    command is read back from the emulator with a separate client. Only the
    stack's own documents (``documents``) are run, anything else (such as
    AWS-RunShellScript) is refused as an error of the day; the document's
    content is read from the emulator too, and its aws:runShellScript steps
    run on the host as root over SSH with their parameters filled in, as the
    agent does. The real exit code and output are returned as the invocation.
    """

    def __init__(self, host: Host, instance_id: str, log: Path, documents: set[str]) -> None:
        self.host = host
        self.instance_id = instance_id
        self.log = log
        self.documents = documents
        self.reader = boto3.client("ssm")  # created before the hook: not intercepted
        self.results: dict[str, dict[str, Any]] = {}
        self.ran: list[str] = []
        self.sent: list[str] = []  # the documents run, in order

    def install(self) -> None:
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        events = boto3.DEFAULT_SESSION.events
        events.register("before-parameter-build.ssm.GetCommandInvocation", self._remember)
        events.register("before-call.ssm.GetCommandInvocation", self._invocation)

    def uninstall(self) -> None:
        if boto3.DEFAULT_SESSION is not None:
            events = boto3.DEFAULT_SESSION.events
            events.unregister("before-parameter-build.ssm.GetCommandInvocation", self._remember)
            events.unregister("before-call.ssm.GetCommandInvocation", self._invocation)

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["st_agent_params"] = dict(params)

    def _invocation(self, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        params = context.get("st_agent_params") or {}
        command_id = params.get("CommandId")
        if not command_id or params.get("InstanceId") != self.instance_id:
            return None
        if command_id not in self.results:
            command = self.reader.list_commands(CommandId=command_id)["Commands"][0]
            document = command["DocumentName"]
            script, timeout = self._script(document, command.get("Parameters") or {})
            self.sent.append(document)
            self.ran.append(script)
            try:
                proc = self.host.sh(f"sudo -n -i bash -c {shlex.quote(script)}", check=False, log=self.log,
                                    timeout=timeout)
                code, out, err = proc.returncode, proc.stdout, proc.stderr
                status = "Success" if code == 0 else "Failed"
            except subprocess.TimeoutExpired:  # the agent ends a command past its executionTimeout
                code, out, err, status = -1, "", f"timed out after {timeout:.0f}s", "TimedOut"
            self.results[command_id] = {
                "CommandId": command_id, "InstanceId": self.instance_id,
                "DocumentName": document, "PluginName": "aws:runShellScript",
                "ResponseCode": code, "Status": status, "StatusDetails": status,
                "StandardOutputContent": out[-24000:], "StandardErrorContent": err[-8000:],
            }
        http = type("Http", (), {"status_code": 200, "headers": {}})()
        return http, dict(self.results[command_id], ResponseMetadata={"HTTPStatusCode": 200})

    def _script(self, document: str, parameters: dict[str, list[str]]) -> tuple[str, float]:
        """The shell script a document's steps amount to, and its deadline in seconds."""
        if document not in self.documents:
            raise DayFailed(f"refused SSM document {document}: the functions may send only {sorted(self.documents)}")
        content = json.loads(self.reader.get_document(Name=document)["Content"])
        values = {name: spec.get("default", "") for name, spec in content.get("parameters", {}).items()}
        unknown = set(parameters) - set(values)
        if unknown:
            raise DayFailed(f"document {document} has no parameter(s) {sorted(unknown)}")
        values.update({name: given[0] for name, given in parameters.items()})
        lines, timeout = [], 0.0
        for step in content["mainSteps"]:
            if step["action"] != "aws:runShellScript":
                raise DayFailed(f"document {document}: step action {step['action']} is not played here")
            lines += step["inputs"]["runCommand"]
            seconds = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)],
                             str(step["inputs"].get("timeoutSeconds", "3600")))
            timeout += float(seconds)
        return "\n".join(lines), timeout


# --------------------------------------------------------------------------- the day


class ShiftedClock:
    """The Lambda's clock, moved to another wall time (monotonic and sleep are real)."""

    def __init__(self, at: datetime) -> None:
        self.offset = at.astimezone(timezone.utc) - datetime.now(timezone.utc)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Stack:
    """What a day needs to know, read back from the emulator after `provision up`."""

    config: Path
    outputs: dict[str, Any]
    functions: dict[str, dict[str, str]]  # name -> Lambda environment
    code_dir: Path  # the deployed Lambda package, unpacked
    queue_url: str


def trading_date(today: date, calendar: dict[str, Any]) -> date:
    """Today if it is a trading day, else the next one (the demo's scheduled day)."""
    d = today
    for _ in range(30):
        if d.isoformat() in calendar.get("special_sessions", {}):
            return d
        if d.weekday() in calendar.get("weekdays", [0, 1, 2, 3, 4]) and d.isoformat() not in calendar["holidays"]:
            return d
        d += timedelta(days=1)
    raise DayFailed("no trading day in the next 30 days")


def scheduled_event(when_local: datetime) -> dict[str, Any]:
    """The event EventBridge sends for a scheduled rule firing at `when_local`."""
    utc = when_local.astimezone(timezone.utc)
    return {"version": "0", "id": "00000000-0000-0000-0000-000000000000", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "ap-south-1", "resources": [], "detail": {}}


@contextlib.contextmanager
def lambda_env(variables: dict[str, str], code_dir: Path) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(variables)
    os.environ["ST_CALENDAR_FILE"] = str(code_dir / "calendar.json")
    os.environ.setdefault("ST_WAITER_DELAY_SECONDS", "1")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_handlers(code_dir: Path) -> tuple[Any, Any]:
    """Import start/stop from the unpacked deployment package (fresh modules)."""
    for mod in [m for m in sys.modules if m in ("start", "stop") or m.startswith("st_")]:
        del sys.modules[mod]
    sys.path.insert(0, str(code_dir))
    try:
        import start  # type: ignore[import-not-found]
        import stop  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(code_dir))
    return start, stop


def invoke(module: Any, event: dict[str, Any], stack: Stack, fn: str, logfile: Path) -> tuple[dict[str, Any], str]:
    """Invoke a handler in-process with its deployed environment; capture its log lines."""
    buf = io.StringIO()
    with lambda_env(stack.functions[fn], stack.code_dir), contextlib.redirect_stdout(buf), \
            contextlib.redirect_stderr(buf):
        import logging

        handler = logging.StreamHandler(buf)
        logging.getLogger().addHandler(handler)
        try:
            result = module.handler(event, None)
            error = ""
        except Exception as exc:  # noqa: BLE001 - the invocation failed, as Lambda would record it
            result = getattr(exc, "result", None) or {"outcome": "failed"}
            error = str(exc)
        finally:
            logging.getLogger().removeHandler(handler)
    with open(logfile, "a") as fh:
        fh.write(f"--- {fn} {json.dumps(event)}\n{buf.getvalue()}\nresult: {json.dumps(result, default=str)}\n"
                 f"error: {error}\n\n")
    return result, error


def notifications(queue_url: str) -> list[dict[str, str]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, str]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return found
        for m in msgs:
            body = json.loads(m["Body"])
            found.append({"subject": body.get("Subject", ""), "message": body.get("Message", "")})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def crontab_entries(text: str) -> dict[str, tuple[list[str], str]]:
    """Named entries of ``crontab -l``: name -> (the five time fields, the command as cron runs it)."""
    entries: dict[str, tuple[list[str], str]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("#Ansible: "):
            name = line[len("#Ansible: "):].strip()
            continue
        if name and line.strip() and not line.startswith("#") and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line):
            fields = line.split(None, 5)
            entries[name] = (fields[:5], fields[5].replace("\\%", "%"))  # cron turns \% into %
            name = None
    return entries


def parse_crontab(text: str) -> dict[str, str]:
    """Cron jobs by name from ``crontab -l``: the exact command cron would run (``__env__``: its
    environment lines)."""
    jobs = {name: command for name, (_, command) in crontab_entries(text).items()}
    jobs["__env__"] = "\n".join(ln for ln in text.splitlines() if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", ln))
    return jobs


def crontab_jobs(host: Host) -> dict[str, str]:
    """ec2-user's cron jobs by name: the exact line cron would run (environment lines included)."""
    return parse_crontab(host.sh("crontab -l").stdout)


def cron_command(jobs: dict[str, str], name: str, user: str = "ec2-user") -> str:
    """A shell command that runs job ``name`` as cron does: /bin/sh, cron's minimal environment plus the
    crontab's own lines. Run it as ``user``."""
    name = next((k for k in jobs if k == name or k.endswith(f"-{name}")), name)  # roles prefix the stack
    if name not in jobs:
        raise DayFailed(f"no cron job named {name!r} in {user}'s crontab (have: {sorted(jobs)})")
    exports = "".join(f"export {ln.split('=', 1)[0]}={shlex.quote(ln.split('=', 1)[1])}; "
                      for ln in jobs["__env__"].splitlines())
    script = f"{exports}{jobs[name]}"
    return (f"env -i HOME=/home/{user} LOGNAME={user} USER={user} SHELL=/bin/sh PATH=/usr/bin:/bin "
            f"/bin/sh -c {shlex.quote(script)}")


def as_user(command: str, user: str, login: str) -> str:
    """A shell command for the login user's shell that runs ``command`` as ``user`` (sudo when it is another;
    from ``/``, since the login user's home may be closed to it)."""
    return command if user == login else f"cd / && sudo -n -u {shlex.quote(user)} {command}"


def run_cron_job(host: Host, jobs: dict[str, str], name: str, log: Path) -> subprocess.CompletedProcess[str]:
    """Run a job as cron does, as ec2-user."""
    return host.sh(cron_command(jobs, name), check=False, log=log)


# --------------------------------------------------------------------------- wheels


def _download_wheels(requirements: list[str], dest: Path, log: Path | None = None) -> Path:
    """Wheels for the host (CPython 3.9), with publish's own builder, cached per requirement set.

    Each set gets a directory of its own (dest/<hash>), so wheels of an older pin
    list never sit beside the current ones.
    """
    from provision.publish import build_wheelhouse

    here = dest / hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    stamp = here / ".complete"
    if not stamp.exists():
        here.mkdir(parents=True, exist_ok=True)
        reqs = here / ".requirements.txt"
        reqs.write_text("\n".join(requirements) + "\n")
        lines: list[str] = []
        build_wheelhouse(reqs, here, log=lines.append)
        if log is not None:
            with open(log, "a") as fh:
                fh.write("\n".join(lines) + "\n")
        stamp.write_text("")
    return here


def tool_wheelhouse(log: Path | None = None) -> Path:
    """Wheels for the host routine's virtualenv, from the role's pinned tool packages."""
    import yaml

    defaults = yaml.safe_load((ROOT / "roles/workspace_sync/defaults/main.yml").read_text())
    return _download_wheels(list(defaults["workspace_sync_tool_packages"]), WHEEL_CACHE / "host-tools", log)


# --------------------------------------------------------------------------- reaching the host


def tunnel_env(targets: dict[str, str], key: str) -> dict[str, str]:
    """What the local world changes for Ansible: the tunnel's command, and nothing else of the path.

    The dynamic inventory still finds the instance in the emulator and still
    connects through its ProxyCommand; ``devtools/tunnel.py`` carries the
    connection to the test host instead of Session Manager. The key is the
    test host's own, and host keys of these throwaway hosts (a benchmark maps
    one instance to two hosts in turn) are not remembered in root's known_hosts.
    """
    return {
        "ST_TUNNEL_COMMAND": f"{sys.executable} {ROOT / 'devtools' / 'tunnel.py'}",
        "ST_TUNNEL_TARGETS": ",".join(f"{k}={v}" for k, v in targets.items()),
        "ST_SSH_KEY": key,
        "ANSIBLE_SSH_EXTRA_ARGS": "-o UserKnownHostsFile=/dev/null",
    }


def recap(text: str) -> dict[str, int]:
    """The PLAY RECAP counters of one ansible-playbook run, summed over hosts."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        if "ok=" in line and "changed=" in line and ":" in line:
            for item in line.split(":", 1)[1].split():
                if "=" in item:
                    k, v = item.split("=", 1)
                    if v.isdigit():
                        totals[k] = totals.get(k, 0) + int(v)
    return totals


def ansible_defaults_config(directory: Path) -> Path:
    """An ansible.cfg of Ansible's defaults (ANSIBLE_CONFIG), naming only this repository's roles: what the
    benchmark and aws-check time the project's ansible.cfg against."""
    path = directory / "ansible-defaults.cfg"
    path.write_text(f"[defaults]\nroles_path = {ROOT / 'roles'}\n")
    return path


def inventory_host(env: dict[str, str], log: Path) -> str:
    """The one host the product's dynamic inventory finds (DayFailed otherwise)."""
    graph = run([str(BIN / "ansible-inventory"), "--graph"], env=env, log=log)
    names = sorted({ln.split("--")[-1].strip() for ln in graph.stdout.splitlines() if "--" in ln and "@" not in ln})
    if len(names) != 1:
        raise DayFailed(f"expected one host in the inventory, found {names}:\n{graph.stdout}")
    return names[0]


# --------------------------------------------------------------------------- the whole flow


class Day:
    """The local stack: emulator, test host, provisioned resources, configured host."""

    def __init__(self, workdir: Path, host_name: str = "trading-day", echo: Callable[[str], None] = print,
                 suffix: str = "-local") -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs = workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.report = Report(echo=echo)
        self.host_name = host_name
        self.suffix = suffix
        self.host: Host | None = None
        self.server: localaws.MotoServer | None = None
        self.stack: Stack | None = None
        self.agent: SsmAgent | None = None
        self.tunnel_targets: dict[str, str] = {}
        self._control_dirs: set[Path] = set()
        self.ssh_key: str | None = None  # the test host's own key unless another host is mapped
        self._saved_env = dict(os.environ)
        self.config = self.write_config()
        self.last_day: date | None = None

    # -- plumbing

    def log(self, name: str) -> Path:
        path = self.logs / f"{name}.log"
        if path not in self.report.logs:
            self.report.logs.append(path)
        return path

    def tool_env(self) -> dict[str, str]:
        assert self.server is not None
        env = dict(os.environ, **self.server.env(), PATH=f"{BIN}:{os.environ['PATH']}",
                   s3_bucket_suffix=self.suffix, ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
                   ANSIBLE_HOST_KEY_CHECKING="False")
        env.pop("S3_BUCKET_SUFFIX", None)
        env["ST_STACK_CONFIG"] = str(self.config)
        # ansible.cfg caches facts by inventory name for an hour; each day's test host is new.
        env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(self.workdir / "ansible-facts")
        env.update(tunnel_env(self.tunnel_targets, self.ssh_key or (self.host.key if self.host else "")))
        # SSH's shared connections (ControlPath) are named after the instance ID, which stays the
        # same when the bench points the instance at another test host: a directory per target
        # host, so a connection kept open to one never carries a run meant for the other.
        # Short (a unix socket's path has at most 107 bytes), under the temporary directory.
        target = "-".join(sorted(set(self.tunnel_targets.values()))) or "none"
        key = hashlib.sha256(f"{self.workdir.resolve()}|{target}".encode()).hexdigest()[:12]
        control_dir = Path(tempfile.gettempdir()) / f"st-cp-{key}"
        control_dir.mkdir(mode=0o700, exist_ok=True)
        self._control_dirs.add(control_dir)
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_dir)
        return env

    def write_config(self) -> Path:
        """stack.yml as shipped, but the token counts as fresh from 00:00 instead of 06:00.

        The demo publishes its token a minute before it trades, at whatever hour
        it is run; with the 06:00 rule a run before 06:00 IST would (rightly)
        refuse to trade. Artifact paths are made absolute, as they are relative
        to the config file.
        """
        import yaml

        cfg = yaml.safe_load((ROOT / "stack.yml").read_text())
        cfg["host"]["token_fresh_after"] = "00:00"  # noqa: S105 - a time of day
        for key, value in cfg.get("artifacts", {}).items():
            cfg["artifacts"][key] = str((ROOT / value).resolve())
        path = self.workdir / "stack.yml"
        path.write_text("# Written by devtools/tradingday.py from the repository's stack.yml\n"
                        + yaml.safe_dump(cfg, sort_keys=False))
        return path

    def reconfigure(self, what: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change the day's stack config as an operator would, then `provision up` and `ansible-playbook
        site.yml` again (the functions' environment and calendar, and the host, follow it). A stopped host
        is started for the playbook and stopped again (README, "Troubleshooting"); the notifications of
        that manual start and stop are not the next day's."""
        import yaml

        cfg = yaml.safe_load(self.config.read_text())
        change(cfg)
        self.config.write_text(f"# Written by devtools/tradingday.py: {what}\n" + yaml.safe_dump(cfg, sort_keys=False))
        with self.report.step(f"{what}: provision up --yes", look=str(self.log("provision"))) as st:
            out = self.provision("up", "--yes")
            st.detail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "done"
        self.stack = self._read_stack()
        stopped = self.instance_state() == "stopped"
        if stopped:
            with self.report.step(f"{what}: provision start --wait-ready (the host runs in market hours only)",
                                  look=str(self.log("provision"))):
                self.provision("start", "--wait-ready")
        with self.report.step(f"{what}: ansible-playbook site.yml", look=str(self.log("ansible"))) as st:
            st.detail = self.converge()
        if stopped:
            with self.report.step(f"{what}: provision stop", look=str(self.log("provision"))):
                self.provision("stop")
        notifications(self.stack.queue_url)

    def prefixes(self) -> dict[str, str]:
        """The bucket prefixes of this day's stack config."""
        import yaml

        return dict(yaml.safe_load(self.config.read_text())["bucket"]["prefixes"])

    def workdir_on_host(self) -> str:
        """host.workdir of this day's stack config: where the trading program runs on the host."""
        import yaml

        return str(yaml.safe_load(self.config.read_text())["host"]["workdir"])

    def provision(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([str(BIN / "python"), "-m", "provision", *args, "--config", str(self.config)],
                   env=self.tool_env(), check=check, log=self.log("provision"))

    # -- setting up

    def boot(self) -> None:
        """The test host (with what an instance profile gives an instance) and the emulator."""
        r = self.report
        with r.step("boot the test host (Debian 11, stands in for EC2)", look="tests/hosts/testhost ssh "
                    f"{self.host_name}") as st:
            self.host = Host.up(self.host_name)
            # What the instance profile gives an EC2 instance through IMDS: credentials for
            # root's AWS SDK calls. The emulator accepts any; these are obviously fake.
            self.host.sh("sudo install -d -m 0700 /root/.aws && printf '[default]\\naws_access_key_id = testing\\n"
                         "aws_secret_access_key = testing\\n' | sudo tee /root/.aws/credentials >/dev/null && "
                         "sudo chmod 0600 /root/.aws/credentials")
            st.detail = f"{self.host.ip}, ssh as ec2-user"
        with r.step("start the AWS emulator (moto server)") as st:
            self.server = localaws.start(bind=self.host.gateway, log_path=self.log("moto"))
            os.environ.update(self.server.env())
            os.environ["s3_bucket_suffix"] = self.suffix
            st.detail = f"{self.server.endpoint} (the host reaches it there too)"

    def bring_up(self) -> None:
        self.boot()
        r = self.report
        with r.step("provision up --yes", look=str(self.log("provision"))) as st:
            out = self.provision("up", "--yes")
            st.detail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "done"
            again = self.provision("plan", "--detailed-exitcode", check=False)
            if again.returncode != 0:
                raise DayFailed(f"plan after up is not empty (exit {again.returncode}): {again.stdout[-500:]}")
        self.stack = self._read_stack()
        with r.step("dynamic inventory finds the instance; the tunnel stand-in carries SSH to the test host",
                    look="devtools/tunnel.py") as st:
            assert self.host is not None
            instance_id = self.stack.functions["start"]["ST_INSTANCE_ID"]
            self.tunnel_targets = {instance_id: self.host.ip}
            st.detail = f"{inventory_host(self.tool_env(), self.log('ansible'))} ({instance_id}) -> {self.host.ip}"
        with r.step("ansible-playbook site.yml", look=str(self.log("ansible"))) as st:
            st.detail = self.converge()
        with r.step("provision publish (code, requirements, wheelhouse, keys.json, token)",
                    look=str(self.log("provision"))) as st:
            out = self.provision("publish", "--wheelhouse", str(self.wheelhouse()))
            st.detail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "published"

    def wheelhouse(self) -> Path:
        """Wheels for the host (Python 3.9), built once and cached, as an operator's publish would."""
        from provision.publish import build_wheelhouse

        dest = WHEEL_CACHE / "example"
        reqs = ROOT / "example" / "simpletrader" / "requirements.txt"
        stamp = dest / (".built-" + __import__("hashlib").sha256(reqs.read_bytes()).hexdigest()[:12])
        if not stamp.exists():
            dest.mkdir(parents=True, exist_ok=True)
            build_wheelhouse(reqs, dest)
            stamp.write_text("")
        return dest

    def tool_wheelhouse(self) -> Path:
        """The host routine's own wheels (boto3 for Python 3.9), for a host without PyPI."""
        return tool_wheelhouse(log=self.log("pip"))

    def converge(self, *args: str) -> str:
        assert self.server is not None and self.host is not None
        extra = {
            "workspace_sync_endpoint_url": self.server.endpoint_for(self.host.gateway),
            "workspace_sync_tool_wheelhouse": str(self.tool_wheelhouse()),
        }
        # The inventory named on the command line too: the benchmark runs this with Ansible's defaults
        # (an ansible.cfg that names no inventory).
        out = run([str(BIN / "ansible-playbook"), "-i", "inventory/aws_ec2.yml", "site.yml", "-e", json.dumps(extra),
                   *args], env=self.tool_env(), log=self.log("ansible"))
        # The trading host's recap line, not the controller's (check_hosts.yml runs on localhost).
        recap = [ln for ln in out.stdout.splitlines()
                 if "ok=" in ln and "changed=" in ln and not ln.startswith("localhost")]
        return recap[-1].split(":", 1)[-1].strip() if recap else "converged"

    def _read_stack(self) -> Stack:
        out = json.loads(self.provision("outputs", "--json").stdout)
        lam = boto3.client("lambda")
        deployed = {fn: lam.get_function(FunctionName=out["functions"][fn]) for fn in ("start", "stop")}
        functions = {fn: d["Configuration"]["Environment"]["Variables"] for fn, d in deployed.items()}
        package = self._package_bytes(deployed["start"])  # one package for both functions
        code_dir = self.workdir / "lambda-package"
        if code_dir.exists():
            shutil.rmtree(code_dir)
        with zipfile.ZipFile(io.BytesIO(package)) as zf:
            zf.extractall(code_dir)
        if self.stack is not None:  # the stack was read before: its queue is subscribed already
            return Stack(self.config, out, functions, code_dir, self.stack.queue_url)
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="trading-day-notifications")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        topic = functions["start"]["ST_TOPIC_ARN"]
        boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        return Stack(self.config, out, functions, code_dir, queue_url)

    def _package_bytes(self, function: dict[str, Any]) -> bytes:
        """The deployed package: rebuilt by provision's packager from the day's config (its calendar)
        and checked against CodeSha256."""
        import base64

        from provision import lambdas  # type: ignore[attr-defined]
        from provision.config import load

        package = lambdas.build_package(load(self.config))
        data = package if isinstance(package, bytes) else package[0]
        sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if sha != function["Configuration"]["CodeSha256"]:
            raise DayFailed("the Lambda package in the emulator differs from the one built from lambda/")
        return data

    # -- days

    def agent_for(self) -> SsmAgent:
        assert self.stack is not None and self.host is not None
        if self.agent is None:
            env = self.stack.functions["start"]
            self.agent = SsmAgent(self.host, env["ST_INSTANCE_ID"], self.log("ssm-agent"),
                                  {env["ST_SYNC_DOCUMENT"], env["ST_EOD_DOCUMENT"]})
            self.agent.install()
        return self.agent

    def instance_state(self) -> str:
        assert self.stack is not None
        iid = self.stack.functions["start"]["ST_INSTANCE_ID"]
        res = boto3.client("ec2").describe_instances(InstanceIds=[iid])
        return str(res["Reservations"][0]["Instances"][0]["State"]["Name"])

    def trading_day(self) -> dict[str, Any]:
        """Start at 08:45, pre-market job, trading job, stop at 15:40: the normal day."""
        assert self.stack is not None and self.host is not None
        r = self.report
        calendar = json.loads((self.stack.code_dir / "calendar.json").read_text())
        day = trading_date(datetime.now(IST).date(), calendar)
        start_mod, stop_mod = load_handlers(self.stack.code_dir)
        self.agent_for()
        facts: dict[str, Any] = {"date": day.isoformat()}
        self.last_day = day
        facts["start"] = self.scheduled(start_mod, "start", day, 8, 45, "calendar, start, SSM sync")
        jobs = crontab_jobs(self.host)
        for name, when in (("pre-market-setup", "08:55"), ("trading", "09:14")):
            with r.step(f"{when} IST cron job {name} (as cron runs it)", look=HOST_JOB_LOGS) as st:
                out = run_cron_job(self.host, jobs, name, self.log("cron"))
                facts[name] = out.returncode
                if out.returncode != 0:
                    raise DayFailed(f"cron job {name} exited {out.returncode}: {(out.stdout + out.stderr)[-400:]}")
                st.detail = "exit 0"
        facts["stop"] = self.scheduled(stop_mod, "stop", day, 15, 40, "end-of-day upload, then stop")
        facts["notifications"] = notifications(self.stack.queue_url)
        return facts

    def scheduled(self, module: Any, fn: str, day: date, hour: int, minute: int, what: str) -> dict[str, Any]:
        """Invoke a handler with the event its EventBridge rule sends at hour:minute IST on `day`."""
        assert self.stack is not None
        with self.report.step(f"{hour:02d}:{minute:02d} IST {fn} Lambda for {day} ({what})",
                              look=str(self.log("lambda"))) as st:
            when = datetime.combine(day, datetime.min.time(), IST).replace(hour=hour, minute=minute)
            result, error = invoke(module, scheduled_event(when), self.stack, fn, self.log("lambda"))
            if error:
                raise DayFailed(f"{fn} failed: {error}")
            st.detail = f"{result.get('outcome')}; instance {self.instance_state()}"
        return result

    def next_trading_morning(self) -> datetime:
        """08:45 IST of the trading day after the last one played (or after today), by the stack's calendar."""
        assert self.stack is not None
        calendar = json.loads((self.stack.code_dir / "calendar.json").read_text())
        after = self.last_day or datetime.now(IST).date()
        return datetime.combine(trading_date(after + timedelta(days=1), calendar), datetime.min.time(),
                                IST).replace(hour=8, minute=45)

    def start_at(self, start_mod: Any, morning: datetime, label: str) -> tuple[dict[str, Any], list[str]]:
        """The start function at its scheduled `morning`, its clock moved there too (the token in the bucket
        was published today, so on a later morning nobody published one that day). Returns its result and
        the keys it read from the bucket."""
        assert self.stack is not None
        reads: list[str] = []
        s3 = boto3.client("s3")
        s3.meta.events.register("before-parameter-build.s3.GetObject",
                                lambda params, **_: reads.append(str(params.get("Key"))))
        with lambda_env(self.stack.functions["start"], self.stack.code_dir):
            settings = start_mod.load_settings()
            clock = ShiftedClock(morning)
            buf = io.StringIO()
            import logging

            handler = logging.StreamHandler(buf)
            logging.getLogger().addHandler(handler)
            try:
                result = start_mod.run_start(
                    event=start_mod.parse_event(scheduled_event(morning), allow_force=True),
                    settings=settings, ec2=boto3.client("ec2"), ssm=boto3.client("ssm"), s3=s3,
                    sns=boto3.client("sns"), clock=clock, budget=start_mod.Budget(clock, None))
            finally:
                logging.getLogger().removeHandler(handler)
            with open(self.log("lambda"), "a") as fh:
                fh.write(f"--- start ({label}, clock {morning.isoformat()})\n{buf.getvalue()}\n"
                         f"result: {json.dumps(result, default=str)}\nread from the bucket: {reads}\n\n")
        return result, reads

    def age_token(self) -> None:
        """The host's token as it is on a morning nobody published one: from the day before."""
        assert self.host is not None
        workdir = self.workdir_on_host()
        self.host.sh(f"touch -h -d '-1 day' {workdir}/access_token.txt && touch -d '-1 day' "
                     f"$(readlink -f {workdir}/access_token.txt)")

    def job_log(self, job: str, day: date) -> str:
        """A cron job's log of `day` on the host (the trading user's)."""
        assert self.host is not None
        return self.host.sh(f"cat /var/lib/simpletrader/logs/{job}-{day.isoformat()}.log", check=False).stdout

    def tear_down(self) -> None:
        if self.agent is not None:
            self.agent.uninstall()
        if self.server is not None:
            self.server.stop()
        if self.host is not None:
            self.host.down()
        for control_dir in self._control_dirs:  # SSH's masters have exited with their host
            shutil.rmtree(control_dir, ignore_errors=True)
        os.environ.clear()
        os.environ.update(self._saved_env)
