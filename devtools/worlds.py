"""Where `make aws-check` (devtools/awscheck.py) runs: your AWS account, or the local world.

:class:`AwsWorld` is an operator's account, every client in the stack's region.
:class:`LocalWorld` is the emulator and a Debian 11 test host
(devtools/tradingday.py), with the substitutions the emulator forces, each
named in :attr:`LocalWorld.substitutions`.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from devtools import handlers, hostkeys, tradingday
from devtools.testhost import BIN
from provision.aws import Clients, error_code, paginate
from provision.lambdas import function_name

# Invoking a function waits for its whole run (Lambda's timeout is 900 s), and is not retried: a retry
# would run the trading day's step twice.
# An invoke waits up to 960 s on an idle connection: keepalive, or a NAT on the way may drop it at 350 s.
INVOKE_CONFIG = Config(read_timeout=960, retries={"mode": "standard", "max_attempts": 0}, tcp_keepalive=True)


class CheckFailed(RuntimeError):
    pass


def function_log_groups(stack: str) -> list[str]:
    """The log groups Lambda makes for the stack's functions at their first run (`provision down` keeps them)."""
    return [f"/aws/lambda/{function_name(stack, kind)}" for kind in ("start", "stop")]


class AwsWorld:
    """Your account: everything as an operator runs it."""

    name = "your AWS account"
    substitutions: tuple[str, ...] = ()
    # How long a run may take (the check refuses to start when that would cross midnight at the exchange), and
    # whether this machine's own tools reach the host (Session Manager's plugin, ssh, Ansible).
    expected_minutes = 75
    checks_local_tools = True

    def __init__(self, workdir: Path, suffix: str, region: str) -> None:
        self.workdir = workdir
        self.suffix = suffix
        self.region = region
        self.key = workdir / "check-key.pem"
        self.known_hosts = workdir / "known_hosts"  # access ssh: the throwaway host's keys, written by trust_host
        # access ssh: accept a key the console did not fingerprint (--accept-new-host-key)
        self.accept_new_host_key = False
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
            return hostkeys.trust(self.client("ec2"), instance_id, ip, self.known_hosts, user=user, key=self.key,
                                  accept_unseen=self.accept_new_host_key)
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
    expected_minutes = 0  # a few minutes; the tests run it at any hour
    checks_local_tools = False  # the tunnel is a stand-in, and the test host's key is its own
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
        # A host named after the run (its suffix is random): two runs at once (the suite's and one by hand)
        # must not boot, and take down, the same test host.
        self.day = tradingday.Day(workdir, host_name=f"awscheck{suffix}", suffix=suffix)

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
        start_mod, stop_mod = handlers.load_handlers(stack.code_dir)
        before = log.stat().st_size if log.exists() else 0
        result, error = handlers.invoke(start_mod if kind == "start" else stop_mod, payload, stack, kind, log)
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
