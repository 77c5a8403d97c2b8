"""`make aws-check`: prove the whole chain on your AWS account, then remove everything it made.

    python -m devtools.awscheck [--yes] [--access ssm|ssh] [--keep]   # your account (credentials as for provision)
    python -m devtools.awscheck --local [--yes]                       # the local world (root; what the tests run)

It makes a throwaway stack from stack.yml (a unique stack name and bucket
suffix, so nothing of yours is touched) and runs, printing each step:

 1. what it will create (`provision plan`) and what the check costs; asks unless --yes;
 2. `provision up`; `provision key` (the key SSH uses);
 3. `provision start --wait-ready`: the host's SSM agent is online; with --access ssh, the new
    host's SSH keys, checked against the fingerprints it printed at boot (its EC2 console output),
    go to a known_hosts file of the run's own (devtools/hostkeys.py; Ansible's Mitogen strategy
    refuses a host key SSH has not seen);
 4. `ansible-playbook site.yml` over the chosen access mode (Session Manager by default);
 5. `provision publish` of the example trading program;
 6. the deployed start function, invoked through the Lambda API with {"force": true}: calendar,
    start, workspace sync; it must end "synced";
 7. each cron job's command, once, as cron runs it, through the same access path (Ansible ad hoc);
 8. the deployed stop function: the end-of-day upload, then stop; the trade logs and ledger must
    be in the bucket;
 9. always, also when a step failed: `provision down --yes --delete-bucket --force --release-ip`,
    and the functions' CloudWatch log groups (/aws/lambda/<function>, which `down` keeps); then it
    checks that nothing of the stack is left: `provision plan` would create every resource again
    and no log group remains (--keep leaves the stack up to look at it; remove it with the command
    it prints).

With --local the same steps run against the emulator and a Debian 11 test host
(devtools/tradingday.py), substituting only what the emulator forces, and saying
so: the Lambda runs in process (the emulator runs no function) and its output is
written to its log group in the emulator, the SSM agent is played over SSH (no
agent), the tunnel is a direct connection to the test host (no Session
Manager), and SSH uses the test host's own key (its image does not install the
stack's key pair); the test host reaches no package index, so the host
routine's packages and the program's wheels come from local wheelhouses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devtools import hostkeys, tradingday
from devtools.tradingday import BIN, ROOT, DayFailed, run
from provision.aws import Clients, error_code, paginate
from provision.lambdas import function_name

CHECK_MINUTES = 30  # what the cost estimate assumes a run takes
# Invoking a function waits for its whole run (Lambda's timeout is 900 s), and is not retried: a retry
# would run the trading day's step twice.
# After `down`, the look for anything left is repeated this many times before it counts (no waiter covers it).
LEFT_RETRIES, LEFT_RETRY_SECONDS = 3, 15.0
INVOKE_CONFIG = Config(read_timeout=960, retries={"mode": "standard", "max_attempts": 0})


class CheckFailed(RuntimeError):
    pass


def function_log_groups(stack: str) -> list[str]:
    """The log groups Lambda makes for the stack's functions at their first run (`provision down` keeps them)."""
    return [f"/aws/lambda/{function_name(stack, kind)}" for kind in ("start", "stop")]


# --------------------------------------------------------------------------- the throwaway stack


def throwaway_config(workdir: Path, access: str, token: str) -> tuple[Path, dict[str, Any]]:
    """stack.yml with a unique stack name, artifact paths made absolute, and the access mode asked for."""
    cfg = yaml.safe_load((ROOT / "stack.yml").read_text())
    cfg["stack"]["name"] = f"stcheck-{token}"
    cfg["network"]["access"] = access
    cfg["network"]["ssh_ingress"] = ["auto"] if access == "ssh" else []
    cfg["host"]["token_fresh_after"] = "00:00"  # noqa: S105 - a time of day: the token is published just before
    for key, value in cfg["artifacts"].items():
        cfg["artifacts"][key] = str((ROOT / value).resolve())
    path = workdir / "check-stack.yml"
    path.write_text("# Written by devtools/awscheck.py: a throwaway stack, removed at the end\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return path, cfg


def check_cost(cfg_path: Path) -> str:
    """What one run of the check costs (the instance, its address and volume for CHECK_MINUTES)."""
    from provision import config as config_mod
    from provision.cost import DEFAULT_PRICES

    cfg = config_mod.load(cfg_path)
    hours = CHECK_MINUTES / 60
    hourly = DEFAULT_PRICES["ec2_hourly"].get(cfg.instance.type)
    if hourly is None:
        return f"no price for {cfg.instance.type} in provision/cost.py's table"
    total = (hourly + DEFAULT_PRICES["public_ipv4_hourly"]) * hours
    total += DEFAULT_PRICES["ebs_gp3_gb_month"] * cfg.instance.root_volume_gb * hours / 730
    return (f"about ${total:.3f} for a {CHECK_MINUTES}-minute run ({cfg.instance.type}, Elastic IP, "
            f"{cfg.instance.root_volume_gb} GiB gp3; Lambda, S3 and SSM calls are a fraction of a cent; "
            f"prices as of {DEFAULT_PRICES['as_of']})")


# --------------------------------------------------------------------------- worlds


class AwsWorld:
    """Your account: everything as an operator runs it."""

    name = "your AWS account"
    substitutions: tuple[str, ...] = ()

    def __init__(self, workdir: Path, suffix: str, region: str) -> None:
        self.workdir = workdir
        self.suffix = suffix
        self.region = region
        self.key = workdir / "check-key.pem"
        self.known_hosts = workdir / "known_hosts"  # access ssh: the throwaway host's keys, written by trust_host
        self._clients: Clients | None = None

    def clients(self) -> Clients:
        """provision's client factory in the stack's region (stack.region), whatever the profile's default."""
        if self._clients is None:  # made at first use: the local world's emulator is started by then
            self._clients = Clients(self.region)
        return self._clients

    def client(self, service: str) -> Any:
        return self.clients().client(service)

    def setup(self, echo: Callable[[str], None]) -> None:
        pass

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", s3_bucket_suffix=self.suffix,
                   ST_SSH_KEY=str(self.key), ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
        env.pop("S3_BUCKET_SUFFIX", None)
        if self.known_hosts.exists():
            # Mitogen runs ssh with StrictHostKeyChecking yes (ahead of ansible.cfg's accept-new): the host
            # is checked against the keys trust_host wrote, in this file only (not the user's known_hosts).
            env["ANSIBLE_SSH_EXTRA_ARGS"] = hostkeys.ssh_options(self.known_hosts)
        return env

    def trust_host(self, instance_id: str, ip: str, user: str) -> str:
        """access ssh: known_hosts for the new instance; one line saying how its keys were trusted."""
        try:
            return hostkeys.trust(self.client("ec2"), instance_id, ip, self.known_hosts, user=user, key=self.key)
        except hostkeys.Untrusted as exc:
            raise CheckFailed(str(exc)) from None

    def after_up(self, outputs: dict[str, Any], config: Path) -> None:
        pass

    def ansible_extra_vars(self) -> dict[str, str]:
        return {}

    def publish_args(self) -> list[str]:
        return []

    def invoke(self, function: str, payload: dict[str, Any], log: Path) -> dict[str, Any]:
        clients = self.clients()
        client = clients.session.client("lambda", config=clients.config.merge(INVOKE_CONFIG))
        resp = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        body = json.loads(resp["Payload"].read() or b"null")
        with open(log, "a") as fh:
            fh.write(f"--- {function} {json.dumps(payload)}\n{json.dumps(body, default=str)}\n\n")
        if resp.get("FunctionError"):
            message = body.get("errorMessage") if isinstance(body, dict) else body
            raise CheckFailed(f"{function} failed: {message} (its log: CloudWatch /aws/lambda/{function})")
        return dict(body)

    def log_groups(self, stack: str) -> list[str]:
        """Which of the functions' log groups exist."""
        wanted = function_log_groups(stack)
        found = paginate(self.client("logs"), "describe_log_groups", "logGroups",
                         logGroupNamePrefix=f"/aws/lambda/{stack}-")
        return sorted(g["logGroupName"] for g in found if g["logGroupName"] in wanted)

    def remove_log_groups(self, stack: str) -> list[str]:
        """Delete the functions' log groups; the ones removed (a function that never ran made none)."""
        removed = []
        for name in function_log_groups(stack):
            try:
                self.client("logs").delete_log_group(logGroupName=name)
                removed.append(name)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
        return removed

    def teardown(self) -> None:
        pass


class LocalWorld(AwsWorld):
    """The emulator and a Debian 11 test host, through devtools/tradingday.py's Day."""

    name = "the local world (emulator + Debian 11 test host)"
    substitutions = (
        "the Lambda functions run in this process with their deployed code and environment (the emulator "
        "runs no function); their output is written to their log groups in the emulator, as Lambda does",
        "the SSM agent is played: the command the function sent is read back and run on the test host "
        "over SSH (the emulator runs no agent)",
        "the Session Manager tunnel is a direct connection to the test host (devtools/tunnel.py; the "
        "emulator has no Session Manager); the inventory and its ProxyCommand are the product's",
        "SSH uses the test host's own key (its image does not install the stack's key pair)",
        "the host routine's packages and the program's wheels come from local wheelhouses (the test host "
        "reaches no package index)",
    )

    def __init__(self, workdir: Path, suffix: str, region: str) -> None:
        super().__init__(workdir, suffix, region)
        self.day = tradingday.Day(workdir, host_name="awscheck-host", suffix=suffix)

    def setup(self, echo: Callable[[str], None]) -> None:
        self.day.report.echo = echo
        self.day.boot()

    def env(self) -> dict[str, str]:
        return self.day.tool_env()

    def after_up(self, outputs: dict[str, Any], config: Path) -> None:
        self.day.config = config
        self.day.stack = self.day._read_stack()
        assert self.day.host is not None
        self.day.tunnel_targets = {outputs["instance_id"]: self.day.host.ip}

    def ansible_extra_vars(self) -> dict[str, str]:
        assert self.day.server is not None and self.day.host is not None
        return {"workspace_sync_endpoint_url": self.day.server.endpoint_for(self.day.host.gateway),
                "workspace_sync_tool_wheelhouse": str(self.day.tool_wheelhouse())}

    def publish_args(self) -> list[str]:
        return ["--wheelhouse", str(self.day.wheelhouse())]

    def invoke(self, function: str, payload: dict[str, Any], log: Path) -> dict[str, Any]:
        stack = self.day.stack
        assert stack is not None
        kind = "start" if function.endswith("-start") else "stop"
        self.day.agent_for()
        start_mod, stop_mod = tradingday.load_handlers(stack.code_dir)
        before = log.stat().st_size if log.exists() else 0
        result, error = tradingday.invoke(start_mod if kind == "start" else stop_mod, payload, stack, kind, log)
        with open(log, "rb") as fh:
            fh.seek(before)
            self.write_function_log(function, fh.read().decode(errors="replace"))
        if error:
            raise CheckFailed(f"{function} failed: {error}")
        return result

    def write_function_log(self, function: str, text: str) -> None:
        """The invocation's output into /aws/lambda/<function>, a stream per invocation, as Lambda writes it."""
        logs, group = self.client("logs"), f"/aws/lambda/{function}"
        try:
            logs.create_log_group(logGroupName=group)
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
        stream = time.strftime("%Y/%m/%d/[$LATEST]") + secrets.token_hex(16)
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in text.splitlines() if line.strip()]
        if events:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def teardown(self) -> None:
        self.day.tear_down()


# --------------------------------------------------------------------------- the chain


class Check:
    def __init__(self, world: AwsWorld, config: Path, cfg: dict[str, Any], workdir: Path,
                 echo: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep) -> None:
        self.world, self.config, self.cfg, self.workdir, self.echo = world, config, cfg, workdir, echo
        self.sleep = sleep
        self.stack = cfg["stack"]["name"]
        self.t0 = time.monotonic()
        self.outputs: dict[str, Any] = {}
        self.created = False
        self.resources: set[str] = set()  # every resource's address, from the plan before anything was made

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.echo(f"[{started - self.t0:6.0f}s] {name} ...")
        yield
        self.echo(f"          ok in {time.monotonic() - started:.1f}s")

    def env(self) -> dict[str, str]:
        return dict(self.world.env(), ST_STACK_CONFIG=str(self.config))

    def provision(self, *args: str, check: bool = True) -> str:
        out = run([str(BIN / "python"), "-m", "provision", *args], env=self.env(), check=check,
                  log=self.log("provision"), timeout=3600)
        return out.stdout

    def ansible(self, *args: str) -> Any:
        return run([str(BIN / "ansible"), "trading_hosts", *args], env=self.env(), log=self.log("ansible"))

    def on_host(self, command: str) -> str:
        """A shell command on the host as the login user, through the access path (Ansible ad hoc)."""
        env = dict(self.env(), ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
        out = run([str(BIN / "ansible"), "trading_hosts", "-m", "ansible.builtin.shell", "-a", command],
                  env=env, log=self.log("ansible"), check=False)
        try:
            hosts = json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]
            result = next(iter(hosts.values()))
        except (ValueError, KeyError, IndexError, StopIteration):
            raise CheckFailed(f"ansible ad hoc gave no result:\n{out.stdout[-800:]}{out.stderr[-800:]}") from None
        if result.get("rc") != 0:
            raise CheckFailed(f"{command[:60]}... exited {result.get('rc')}: "
                              f"{(result.get('stdout', '') + result.get('stderr', '') + result.get('msg', ''))[-400:]}")
        return str(result.get("stdout", ""))

    # -- the steps

    def announce(self, ask: bool) -> bool:
        self.echo(f"aws-check: {self.world.name}; a throwaway stack {self.stack} "
                  f"(bucket suffix {self.world.suffix}), network.access {self.cfg['network']['access']}")
        for s in self.world.substitutions:
            self.echo(f"  substitution: {s}")
        self.echo(self.provision("plan"))
        self.resources = {c["address"] for c in json.loads(self.provision("plan", "--json"))["changes"]}
        self.echo(f"Cost of this check: {check_cost(self.config)}.")
        self.echo("Everything above is removed at the end, also when a step fails.")
        if not ask:
            return True
        try:
            answer = input("Create it and run the check? Only 'yes' will be accepted: ")
        except EOFError:
            answer = ""
        return answer.strip() == "yes"

    def up(self) -> None:
        with self.step("provision up --yes; provision key"):
            self.created = True
            self.provision("up", "--yes")
            self.outputs = json.loads(self.provision("outputs", "--json"))
            self.world.after_up(self.outputs, self.config)
            self.provision("key", "--out", str(self.workdir / "check-key.pem"))

    def converge(self) -> None:
        with self.step("provision start --wait-ready; ansible-playbook site.yml"):
            self.provision("start", "--wait-ready")
            if self.cfg["network"]["access"] == "ssh":
                outputs = json.loads(self.provision("outputs", "--json"))  # the address as it is now
                self.echo("          " + self.world.trust_host(outputs["instance_id"], outputs["public_ip"],
                                                               self.cfg["host"]["user"]))
            extra = self.world.ansible_extra_vars()
            run([str(BIN / "ansible-playbook"), "site.yml", *(["-e", json.dumps(extra)] if extra else [])],
                env=self.env(), log=self.log("ansible"), timeout=3600)
        with self.step("provision publish (the example program)"):
            self.provision("publish", *self.world.publish_args())

    def trading_day(self) -> None:
        functions = self.outputs["functions"]
        with self.step(f"invoke {functions['start']} with {{\"force\": true}} (Lambda API)"):
            started = self.world.invoke(functions["start"], {"force": True}, self.log("lambda"))
            if started.get("outcome") != "synced":
                raise CheckFailed(f"the start function ended {started.get('outcome')}: {started.get('error')}")
        # The jobs are in the trading user's crontab and run as that user (host.trading_user, default host.user).
        login = self.cfg["host"]["user"]
        trader = self.cfg["host"].get("trading_user") or login
        jobs = tradingday.parse_crontab(self.on_host(f"sudo -n crontab -l -u {trader}"))
        for job in self.cfg["cron_jobs"]:
            with self.step(f"cron job {job['name']} once, as cron runs it (as {trader})"):
                self.on_host(tradingday.as_user(tradingday.cron_command(jobs, job["name"], trader), trader, login))
        with self.step(f"invoke {functions['stop']} (end of day, then stop)"):
            stopped = self.world.invoke(functions["stop"], {}, self.log("lambda"))
            if stopped.get("outcome") != "stopped":
                raise CheckFailed(f"the stop function ended {stopped.get('outcome')}: {stopped.get('error')}")
        with self.step("the day's trade logs and ledger are in the bucket"):
            self.uploads(str(started["date"]))

    def uploads(self, day: str) -> None:
        s3 = self.world.client("s3")
        prefixes = self.cfg["bucket"]["prefixes"]
        for prefix in (f"{prefixes['logs']}{day}/", prefixes["ledger"]):
            listed = s3.list_objects_v2(Bucket=self.outputs["bucket"], Prefix=prefix).get("KeyCount", 0)
            if not listed:
                raise CheckFailed(f"nothing under s3://{self.outputs['bucket']}/{prefix} after the end of day")
            self.echo(f"          {listed} object(s) under {prefix}")

    def left(self) -> list[str]:
        """What of the stack exists: each resource `plan` would not create anew, and the functions' log groups."""
        plan = json.loads(self.provision("plan", "--json"))
        creates = {c["address"] for c in plan["changes"] if c["action"] == "create"}
        return sorted(self.resources - creates) + self.world.log_groups(self.stack)

    def down(self) -> None:
        """Remove everything the check made, then look: nothing of it may be left (CheckFailed names what is)."""
        try:
            before: list[str] | None = self.left()
        except DayFailed:  # e.g. credentials that expired mid-run: remove what can be removed all the same
            before = None
        with self.step("provision down --yes --delete-bucket --force --release-ip; the functions' log groups"):
            try:
                self.provision("down", "--yes", "--delete-bucket", "--force", "--release-ip")
            finally:
                removed = self.world.remove_log_groups(self.stack)
                self.echo(f"          log groups removed: {', '.join(removed) or 'none (no function ran)'}")
        with self.step(f"nothing of stack {self.stack} is left"):
            after = self.left()
            for _ in range(LEFT_RETRIES):  # AWS may still show a just-deleted bucket or role for a few seconds
                if not after:
                    break
                self.sleep(LEFT_RETRY_SECONDS)
                after = self.left()
            (self.workdir / "cleanup.json").write_text(json.dumps({"before": before, "after": after}, indent=2))
            if after:
                raise CheckFailed(f"left behind: {', '.join(after)}")
            self.echo(f"          {len(before or [])} resource(s) and log group(s) before, none now: `provision "
                      f"plan` would create all {len(self.resources)} resources again")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.awscheck", description=__doc__.split("\n")[0])
    p.add_argument("--local", action="store_true", help="the local world (emulator + test host; needs root)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before creating the throwaway stack")
    p.add_argument("--access", choices=("ssm", "ssh"), default="ssm", help="network.access of the stack")
    p.add_argument("--keep", action="store_true", help="leave the stack up at the end (you remove it)")
    p.add_argument("--workdir", type=Path, default=None, help="where its config, key and logs go")
    args = p.parse_args(argv)
    if args.local and args.access == "ssh":
        print("aws-check --local: --access ssh needs a real account (the local world reaches its test host "
              "through the Session Manager stand-in only)", file=sys.stderr)
        return 1
    if args.local and os.geteuid() != 0:
        print("aws-check --local: needs root (the test host uses network namespaces and systemd-nspawn)",
              file=sys.stderr)
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simpletrader-awscheck-"))
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(3)
    config, cfg = throwaway_config(workdir, args.access, token)
    world = (LocalWorld if args.local else AwsWorld)(workdir, f"-check-{token}", cfg["stack"]["region"])
    check = Check(world, config, cfg, workdir)
    code = 0
    try:
        world.setup(check.echo)
        if not check.announce(ask=not args.yes):
            print("Cancelled; nothing was created.")
            return 1
        check.up()
        check.converge()
        check.trading_day()
        print(f"aws-check: the whole chain works on {world.name}.")
    except (CheckFailed, DayFailed, ClientError, BotoCoreError) as exc:
        print(f"aws-check: FAILED: {exc}\nLogs: {workdir}", file=sys.stderr)
        code = 1
    finally:
        remove = (f"ST_STACK_CONFIG={config} s3_bucket_suffix={world.suffix} python -m provision down --yes "
                  "--delete-bucket --force --release-ip; then "
                  + "; ".join(f"aws logs delete-log-group --region {world.region} --log-group-name {g}"
                              for g in function_log_groups(check.stack)))
        if check.created and not args.keep:
            try:
                check.down()
            except (CheckFailed, DayFailed, ClientError, BotoCoreError) as exc:
                print(f"aws-check: could not remove stack {check.stack}: {exc}\nRemove it with: {remove}",
                      file=sys.stderr)
                code = 1
        elif check.created:
            print(f"Kept stack {check.stack}. Remove it with: {remove}")
        world.teardown()
        print(f"Logs: {workdir} ({time.monotonic() - check.t0:.0f}s)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
