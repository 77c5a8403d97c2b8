"""One whole trading day on the local default, the way a trader's day runs.

The emulator stands in for AWS and a Debian 11 test host for the EC2
instance. Nothing here is special to the product: the same `provision`,
playbooks, host routines and Lambda handlers run as on AWS. The three things no
emulator does are played here, openly:

- the SSM agent: when the Lambda asks for a command's result, the document it
  sent is read back from the emulator (only the stack's own two are accepted),
  its commands are run on the test host over SSH, and their real exit code
  and output become the invocation's result (``devtools/ssmagent.py``);
- the Session Manager tunnel: Ansible finds the instance through the product's
  dynamic inventory and connects through its ProxyCommand, whose command alone
  is swapped (``ST_TUNNEL_COMMAND``) for ``devtools/tunnel.py``, which carries
  the SSH connection to the test host (``devtools/ansiblerun.py``);
- cron and EventBridge firing: the jobs run now, with the command line, user
  and environment from the host's crontab; the handlers are invoked with the
  scheduled event EventBridge would send (``devtools/crontab.py``,
  ``devtools/handlers.py``).

The test host itself is ``devtools/testhost.py``; its wheels, ``devtools/wheels.py``.

`python -m devtools.demo` runs it and prints a report; `tests/e2e` asserts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3

from devtools import localaws
from devtools.ansiblerun import inventory_host, tunnel_env
from devtools.crontab import crontab_jobs, run_cron_job
from devtools.handlers import ShiftedClock, Stack, invoke, lambda_env, load_handlers, notifications, scheduled_event
from devtools.ssmagent import SsmAgent
from devtools.testhost import BIN, ROOT, DayFailed, Host, run
from devtools.wheels import WHEEL_CACHE, tool_wheelhouse

IST = ZoneInfo("Asia/Kolkata")
HOST_JOB_LOGS = "/var/lib/simpletrader/logs/ on the host"


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


# --------------------------------------------------------------------------- the day


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
        from provision.wheelhouse import build_wheelhouse

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
