"""`make aws-check`: prove the whole chain on your AWS account, then remove everything it made.

    python -m devtools.awscheck [--yes] [--access ssm|ssh] [--keep]   # your account (credentials as for provision)
    python -m devtools.awscheck --local [--yes]                       # the local world (root; what the tests run)

It makes a throwaway stack from stack.yml (a unique stack name and bucket
suffix, so nothing of yours is touched; its start, stop and job times moved
hours away from now and no special sessions, so that no schedule of it fires
during the check) and runs, printing each step (and writing them to
check.log in its work directory):

 1. what this machine lacks to reach the host (`provision doctor`'s local checks: the check stops
    here if anything is missing); what it will create (`provision plan`), what the check costs and
    the command that removes it; asks unless --yes;
 2. `provision up`; `provision key` (the key SSH uses);
 3. `provision start --wait-ready`: the host's SSM agent is online; with --access ssh, the new
    host's SSH keys, checked against the fingerprints it printed at boot (its EC2 console output),
    go to a known_hosts file of the run's own (devtools/hostkeys.py; Ansible's Mitogen strategy
    refuses a host key SSH has not seen);
 4. `ansible-playbook site.yml` over the chosen access mode (Session Manager by default); then
    site.yml again, which must change nothing, with the project's ansible.cfg and with Ansible's
    defaults, timed side by side over the same path (the defaults' second run is the one timed);
 5. `provision publish` of the example trading program;
 6. the deployed start function, invoked through the Lambda API with {"force": true}: calendar,
    start, workspace sync; it must end "synced";
 7. each cron job's command, once, as cron runs it, through the same access path (Ansible ad hoc);
 8. the deployed stop function: the end-of-day upload, then stop; the trade logs and ledger must
    be in the bucket;
 9. the next morning's path: the start function again, now on the stopped host, as on every
    trading day (its role starts the host, the SSM agent comes back, the sync runs); then the stop
    function again;
10. always, also when a step failed: `provision down --yes --delete-bucket --force --release-ip`,
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
routine's packages and the program's wheels come from local wheelhouses. The two
worlds are in devtools/worlds.py, the throwaway stack's config in
devtools/throwaway.py; this module is the chain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from devtools import crontab
from devtools.ansiblerun import ansible_defaults_config, recap
from devtools.testhost import BIN, DayFailed, run
from devtools.throwaway import check_cost, throwaway_config, too_close_to_midnight
from devtools.worlds import AwsWorld, CheckFailed, LocalWorld, function_log_groups

# After `down`, the look for anything left is repeated this many times before it counts (no waiter covers it).
LEFT_RETRIES, LEFT_RETRY_SECONDS = 3, 15.0


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

    def removal(self) -> str:
        """The commands that remove the throwaway stack by hand, if the check cannot."""
        return (f"ST_STACK_CONFIG={self.config} s3_bucket_suffix={self.world.suffix} python -m provision down --yes "
                "--delete-bucket --force --release-ip; then "
                + "; ".join(f"aws logs delete-log-group --region {self.world.region} --log-group-name {g}"
                            for g in function_log_groups(self.stack)))

    def local_tools(self) -> None:
        """This machine can reach the host (`provision doctor`'s local checks), before anything is paid for."""
        if not self.world.checks_local_tools:
            return
        # With the PATH the steps run with (the virtualenv's bin first).
        probe = ("import json, sys\nfrom provision import config, doctor\n"
                 "found = doctor.local_checks(config.load(sys.argv[1]))\n"
                 "print(json.dumps([[c.name, c.detail] for c in found if c.failed]))\n")
        out = run([str(BIN / "python"), "-c", probe, str(self.config)], env=self.env(), log=self.log("provision"))
        failed = json.loads(out.stdout)
        if failed:
            raise CheckFailed("this machine cannot reach the host yet, so nothing was created:\n"
                              + "\n".join(f"  {name}: {detail}" for name, detail in failed))

    def announce(self, ask: bool) -> bool:
        self.echo(f"aws-check: {self.world.name}; a throwaway stack {self.stack} "
                  f"(bucket suffix {self.world.suffix}), network.access {self.cfg['network']['access']}")
        for s in self.world.substitutions:
            self.echo(f"  substitution: {s}")
        self.local_tools()
        self.echo(self.provision("plan"))
        self.resources = {c["address"] for c in json.loads(self.provision("plan", "--json"))["changes"]}
        self.echo(f"Cost of this check: {check_cost(self.config)}.")
        self.echo("Everything above is removed at the end, also when a step fails. Should this run be cut off "
                  f"before it can remove it, remove it with:\n  {self.removal()}\nLogs: {self.workdir}")
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
            self.site(self.env())
        self.no_change_runs()
        with self.step("provision publish (the example program)"):
            self.provision("publish", *self.world.publish_args())

    def site(self, env: dict[str, str]) -> dict[str, int]:
        """ansible-playbook site.yml (the inventory named: Ansible's defaults name none); its recap counts."""
        extra = self.world.ansible_extra_vars()
        out = run([str(BIN / "ansible-playbook"), "-i", "inventory/aws_ec2.yml", "site.yml",
                   *(["-e", json.dumps(extra)] if extra else [])], env=env, log=self.log("ansible"), timeout=3600)
        return recap(out.stdout)

    def no_change_runs(self) -> None:
        """site.yml on the converged host, with the project's ansible.cfg and with Ansible's defaults (a config
        naming only the roles), through the same connection: on AWS, Session Manager, whose round trips the
        local benchmark can only assume. Each must change nothing; the defaults' second run is the one timed."""
        with self.step("site.yml again, nothing to change: the project's ansible.cfg, then Ansible's defaults"):
            seconds: dict[str, float] = {}
            defaults = dict(self.env(), ANSIBLE_CONFIG=str(ansible_defaults_config(self.workdir)))
            for label, env, runs in (("project", self.env(), 1), ("defaults", defaults, 2)):
                for _ in range(runs):
                    started = time.monotonic()
                    counts = self.site(env)
                    seconds[label] = time.monotonic() - started
                    if counts.get("changed", -1) != 0:
                        raise CheckFailed(f"a second site.yml ({label}) changed something or reported nothing: "
                                          f"{counts or 'no recap'}; see {self.log('ansible')}")
            self.echo(f"          no-change site.yml: {seconds['project']:.1f} s with the project's ansible.cfg, "
                      f"{seconds['defaults']:.1f} s with Ansible's defaults "
                      f"({seconds['defaults'] / seconds['project']:.1f}x)")

    def trading_day(self) -> None:
        functions = self.outputs["functions"]
        with self.step(f"invoke {functions['start']} with {{\"force\": true}} (Lambda API)"):
            started = self.world.invoke(functions["start"], {"force": True}, self.log("lambda"))
            if started.get("outcome") != "synced":
                raise CheckFailed(f"the start function ended {started.get('outcome')}: {started.get('error')}")
        # The jobs are in the trading user's crontab and run as that user (host.trading_user, default host.user).
        login = self.cfg["host"]["user"]
        trader = self.cfg["host"].get("trading_user") or login
        jobs = crontab.parse_crontab(self.on_host(f"sudo -n crontab -l -u {trader}"))
        for job in self.cfg["cron_jobs"]:
            with self.step(f"cron job {job['name']} once, as cron runs it (as {trader})"):
                self.on_host(crontab.as_user(crontab.cron_command(jobs, job["name"], trader), trader, login))
        with self.step(f"invoke {functions['stop']} (end of day, then stop)"):
            stopped = self.world.invoke(functions["stop"], {}, self.log("lambda"))
            if stopped.get("outcome") != "stopped":
                raise CheckFailed(f"the stop function ended {stopped.get('outcome')}: {stopped.get('error')}")
        with self.step("the day's trade logs and ledger are in the bucket"):
            self.uploads(str(started["date"]))
        with self.step(f"invoke {functions['start']} again, on the stopped host, as every morning (its role starts "
                       "it, the SSM agent comes back, the sync runs)"):
            again = self.world.invoke(functions["start"], {"force": True}, self.log("lambda"))
            if again.get("state_before") != "stopped" or again.get("outcome") != "synced":
                raise CheckFailed(f"the start function on the stopped host ended {again.get('outcome')} (the host "
                                  f"was {again.get('state_before')}): {again.get('error')}")
        with self.step(f"invoke {functions['stop']} again"):
            stopped = self.world.invoke(functions["stop"], {}, self.log("lambda"))
            if stopped.get("outcome") != "stopped":
                raise CheckFailed(f"the stop function ended {stopped.get('outcome')}: {stopped.get('error')}")

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

    def left_settled(self) -> list[str]:
        """left(), looked at again while something still shows or the look itself fails: AWS may show a
        just-deleted bucket or role for a few seconds, and answer for it inconsistently meanwhile."""
        for attempt in range(LEFT_RETRIES + 1):
            last = attempt == LEFT_RETRIES
            try:
                after = self.left()
            except (DayFailed, ClientError, BotoCoreError):
                if last:
                    raise
                after = None
            if after == [] or (after is not None and last):
                return after
            self.sleep(LEFT_RETRY_SECONDS)
        raise AssertionError("unreachable")

    def down(self) -> None:
        """Remove everything the check made, then look: nothing of it may be left (CheckFailed names what is)."""
        try:
            before: list[str] | None = self.left()
        except (DayFailed, ClientError, BotoCoreError):  # e.g. expired credentials: remove what can be removed
            before = None
        with self.step("provision down --yes --delete-bucket --force --release-ip; the functions' log groups"):
            try:
                self.provision("down", "--yes", "--delete-bucket", "--force", "--release-ip")
            finally:
                removed = self.world.remove_log_groups(self.stack)
                self.echo(f"          log groups removed: {', '.join(removed) or 'none (no function ran)'}")
        with self.step(f"nothing of stack {self.stack} is left"):
            after = self.left_settled()
            (self.workdir / "cleanup.json").write_text(json.dumps({"before": before, "after": after}, indent=2))
            if after:
                raise CheckFailed(f"left behind: {', '.join(after)}")
            self.echo(f"          {len(before or [])} resource(s) and log group(s) before, none now: `provision "
                      f"plan` would create all {len(self.resources)} resources again")


class Say:
    """Each line to the terminal and to the run's own log; a terminal that has gone (hung up) is skipped, so
    that the removal of the stack still runs and is still written down."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, text: str, err: bool = False) -> None:
        with contextlib.suppress(OSError), open(self.log, "a") as fh:
            fh.write(text + "\n")
        with contextlib.suppress(OSError, ValueError):
            print(text, file=sys.stderr if err else sys.stdout, flush=True)


HANGUPS = (signal.SIGTERM, signal.SIGHUP)
CLEANING = {"now": False}  # set once the removal begins


def _interrupted(number: int, _frame: Any) -> None:
    if not CLEANING["now"]:
        raise KeyboardInterrupt(signal.Signals(number).name)


def _interruptible() -> dict[int, Any]:
    """A closed terminal or a kill ends the run as Ctrl-C does, so the stack is removed; a signal already
    ignored (nohup) stays ignored. Returns the handlers to put back."""
    CLEANING["now"] = False
    previous: dict[int, Any] = {number: signal.getsignal(number) for number in HANGUPS}
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, _interrupted)
    return previous


def _shield() -> None:
    """Ignore hang-ups and kills while the stack is removed. CLEANING already stops the handler raising in this
    process; ignoring the signals also covers the `provision down` it runs, which inherits an ignore (a handler
    it would not)."""
    for number in HANGUPS:
        signal.signal(number, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.awscheck", description=__doc__.split("\n")[0])
    p.add_argument("--local", action="store_true", help="the local world (emulator + test host; needs root)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before creating the throwaway stack")
    p.add_argument("--access", choices=("ssm", "ssh"), default="ssm", help="network.access of the stack")
    p.add_argument("--keep", action="store_true", help="leave the stack up at the end (you remove it)")
    p.add_argument("--accept-new-host-key", action="store_true",
                   help="access ssh: when the console shows no host key fingerprints in time, accept the key on first "
                        "contact (otherwise the check stops there)")
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
    world_class = LocalWorld if args.local else AwsWorld
    try:
        config, cfg = throwaway_config(workdir, args.access, token)
    except CheckFailed as exc:
        print(f"aws-check: {exc}; nothing was created", file=sys.stderr)
        return 1
    late = too_close_to_midnight(cfg, world_class.expected_minutes)
    if late:
        print(f"aws-check: {late}", file=sys.stderr)
        return 1
    world = world_class(workdir, f"-check-{token}", cfg["stack"]["region"])
    world.accept_new_host_key = args.accept_new_host_key
    say = Say(workdir / "check.log")
    check = Check(world, config, cfg, workdir, echo=say)
    code = 0
    previous = _interruptible()
    try:
        world.setup(check.echo)
        if not check.announce(ask=not args.yes):
            say("Cancelled; nothing was created.")
            return 1
        check.up()
        check.converge()
        check.trading_day()
        say(f"aws-check: the whole chain works on {world.name}.")
    except (CheckFailed, DayFailed, ClientError, BotoCoreError) as exc:
        say(f"aws-check: FAILED: {exc}\nLogs: {workdir}", err=True)
        code = 1
    except subprocess.TimeoutExpired as exc:
        say(f"aws-check: FAILED: {' '.join(map(str, exc.cmd[:4]))} ... did not end within {exc.timeout:.0f}s\n"
            f"Logs: {workdir}", err=True)
        code = 1
    except json.JSONDecodeError as exc:  # an answer that is not the JSON a step reads (plan --json, outputs --json)
        say(f"aws-check: FAILED: a step's output could not be read: {exc}\nLogs: {workdir}", err=True)
        code = 1
    except KeyboardInterrupt:
        say("aws-check: interrupted; " + ("removing what it made" if check.created else "nothing was made")
            + f"\nLogs: {workdir}", err=True)
        code = 130
    finally:
        CLEANING["now"] = True  # a hang-up or kill from here on is ignored, also before _shield has run
        _shield()  # a closed terminal or a kill no longer cuts the removal short (Ctrl-C still can)
        try:
            if check.created and not args.keep:
                try:
                    check.down()
                except BaseException as exc:  # noqa: BLE001 - whatever stopped the removal, say how to finish it
                    say(f"aws-check: could not remove stack {check.stack}: {exc or type(exc).__name__}\n"
                        f"Remove it with: {check.removal()}", err=True)
                    code = code or 1
            elif check.created:
                say(f"Kept stack {check.stack}. Remove it with: {check.removal()}")
        finally:
            try:
                world.teardown()
            except KeyboardInterrupt:
                say("aws-check: interrupted at the very end, after the stack's removal above"
                    + ("; the test host and the emulator may still run: `tests/hosts/testhost list` shows them"
                       if args.local else ""), err=True)
                code = code or 130
            finally:
                say(f"Logs: {workdir} ({time.monotonic() - check.t0:.0f}s)")
                for number, handler in previous.items():
                    signal.signal(number, handler)
    return code

if __name__ == "__main__":
    raise SystemExit(main())
