"""How the operator reaches the host: SSH through Session Manager (``ssm``) or straight (``ssh``).

``network.access`` chooses, and everything follows the one choice: the
security group (no inbound rule with ``ssm``), the dynamic inventory
(``inventory/aws_ec2.yml``: Ansible's host is the instance id and its SSH
runs through :data:`TUNNEL_SCRIPT`), and the ``ssh``/``scp`` lines that
``outputs`` and ``key`` print.

The tunnel is ``python -m provision tunnel INSTANCE PORT`` (what
``inventory/ssm-tunnel`` runs as SSH's ProxyCommand): it calls Session
Manager's StartSession for the ``AWS-StartSSHSession`` document with boto3,
then hands the session to AWS's ``session-manager-plugin``, which carries the
SSH bytes, exactly as ``aws ssm start-session`` does. So the operator needs
the plugin but not the AWS CLI, and the tunnel uses the same credentials,
profile and endpoint resolution as every other ``provision`` command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from provision.aws import error_code, error_message
from provision.config import Config
from provision.errors import ProvisionError

ROOT = Path(__file__).resolve().parent.parent
#: SSH's ProxyCommand for ``access: ssm`` (the inventory runs it relative to the repository root).
TUNNEL_SCRIPT = "inventory/ssm-tunnel"
#: Replaces the tunnel's command (the local test world swaps in a stand-in; nothing else does).
TUNNEL_ENV = "ST_TUNNEL_COMMAND"
PLUGIN = "session-manager-plugin"
SSH_DOCUMENT = "AWS-StartSSHSession"
PLUGIN_INSTALL = ("https://docs.aws.amazon.com/systems-manager/latest/userguide/"
                  "session-manager-working-with-install-plugin.html")
# Plugins newer than this read the session (with its token) from an environment variable
# named on the command line, so the token is not visible in the process list.
_LAST_PLUGIN_WITHOUT_ENV = (1, 2, 497, 0)
_RESPONSE_ENV = "AWS_SSM_START_SESSION_RESPONSE"
# A running host whose agent is not connected to Session Manager yet is asked again for this long.
TARGET_WAIT_SECONDS, TARGET_POLL_SECONDS = 12.0, 3.0

Exec = Callable[[str, list[str], Mapping[str, str]], Any]


# --------------------------------------------------------------------------- ssh / scp lines


def proxy_command(cfg: Config, absolute: bool = True) -> str:
    """SSH's ProxyCommand for ``access: ssm`` (``%h`` is the instance id, ``%p`` the port)."""
    script = str(ROOT / TUNNEL_SCRIPT) if absolute else TUNNEL_SCRIPT
    return f"{shlex.quote(script)} --region {cfg.stack.region} %h %p"


def ssh_lines(cfg: Config, instance_id: str | None, public_ip: str | None, pem: str) -> dict[str, str]:
    """The ``ssh`` and ``scp`` commands that reach the host in the configured access mode."""
    if cfg.network.access == "ssm":
        target = f"{cfg.host.user}@{instance_id or '<instance-id>'}"
        opts = f"-i {pem} -o ProxyCommand={shlex.quote(proxy_command(cfg))}"
    else:
        target = f"{cfg.host.user}@{public_ip or '<public-ip>'}"
        opts = f"-i {pem}"
    return {"ssh": f"ssh {opts} {target}", "scp": f"scp {opts} <local-file-path> {target}:<remote-file-path>"}


# --------------------------------------------------------------------------- the plugin


def plugin_path() -> str | None:
    return shutil.which(PLUGIN)


def plugin_version(path: str) -> str | None:
    """The plugin's version (``1.2.707.0``), or None when it does not run."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = proc.stdout.strip()
    return text if proc.returncode == 0 and re.match(r"^\d+(\.\d+){0,3}$", text) else None


def _newer_than(version: str, floor: tuple[int, ...]) -> bool:
    parts = [int(p) for p in version.split(".")]
    parts += [0] * (len(floor) - len(parts))
    return tuple(parts) > floor


def plugin_missing_message() -> str:
    return (f"{PLUGIN} is not installed (or not on PATH); with network.access: ssm, ssh and Ansible reach the "
            f"host through it. Install it: {PLUGIN_INSTALL} (macOS: brew install --cask session-manager-plugin), "
            "or set network.access: ssh")


# --------------------------------------------------------------------------- the tunnel


def open_tunnel(ssm: Any, ec2: Any, instance_id: str, port: int, *, profile: str = "",
                execute: Exec | None = None, sleep: Callable[[float], None] | None = None) -> NoReturn:
    """Start an SSH session to ``instance_id`` through Session Manager and become the plugin.

    The plugin carries SSH's stdin/stdout through the session and ends it when
    SSH closes. Raises ProvisionError (before any session is started when the
    plugin is missing) with what to do.
    """
    path = plugin_path()
    version = plugin_version(path) if path else None
    if path is None or version is None:
        raise ProvisionError(plugin_missing_message())
    params = {"Target": instance_id, "DocumentName": SSH_DOCUMENT, "Parameters": {"portNumber": [str(port)]}}
    response = _start_session(ssm, ec2, instance_id, params, sleep or time.sleep)
    session = json.dumps({k: response[k] for k in ("SessionId", "TokenValue", "StreamUrl")})
    env = dict(os.environ)
    if _newer_than(version, _LAST_PLUGIN_WITHOUT_ENV):
        env[_RESPONSE_ENV] = session
        session = _RESPONSE_ENV
    argv = [path, session, ssm.meta.region_name, "StartSession", profile, json.dumps(params),
            ssm.meta.endpoint_url]
    (execute or os.execve)(path, argv, env)
    raise ProvisionError(f"{PLUGIN} did not start")  # os.execve does not return


def _start_session(ssm: Any, ec2: Any, instance_id: str, params: dict[str, Any],
                   sleep: Callable[[float], None]) -> Any:
    """StartSession; while a running host's agent is not connected yet, asked again for a few seconds.

    The agent reports Online (what `start --wait-ready` waits for) a moment before Session Manager's own
    channel to it is open, and Ansible does not retry a host it could not reach. The wait, counted in
    attempts and bounded in time as well (slow answers count too), stays well inside ssh's ConnectTimeout
    with the project's ansible.cfg (`timeout = 30`), which covers the time the tunnel takes to start.
    """
    deadline = time.monotonic() + TARGET_WAIT_SECONDS
    attempts = int(TARGET_WAIT_SECONDS / TARGET_POLL_SECONDS) + 1
    for attempt in range(1, attempts + 1):
        try:
            return ssm.start_session(**params)
        except ClientError as exc:
            state = _state(ec2, instance_id) if error_code(exc) == "TargetNotConnected" else None
            if state == "running" and attempt < attempts and time.monotonic() < deadline:
                sleep(TARGET_POLL_SECONDS)
                continue
            raise ProvisionError(_start_failed(exc, instance_id, state)) from None
        except BotoCoreError as exc:
            raise ProvisionError(f"could not start a Session Manager session to {instance_id}: {exc}") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _start_failed(exc: ClientError, instance_id: str, state: str | None) -> str:
    """What a refused StartSession means; ``state`` is the host's (None when it could not be read)."""
    code, message = error_code(exc), error_message(exc)
    if code == "TargetNotConnected":
        if state and state != "running":
            return (f"host {instance_id} is {state}: start it with `python -m provision start --wait-ready`, "
                    "then connect again")
        shown = "is running but its" if state == "running" else "could not be looked up, and its"
        return (f"host {instance_id} {shown} SSM agent is not connected to Session Manager yet "
                "(it registers within a minute or two of a start); wait, or run "
                "`python -m provision start --wait-ready`, then connect again")
    if code in ("AccessDeniedException", "AccessDenied"):
        return (f"StartSession on {instance_id} was denied ({message}); your credentials need ssm:StartSession "
                f"on the instance and on the document {SSH_DOCUMENT}")
    return f"StartSession on {instance_id} failed: {code}: {message}"


def _state(ec2: Any, instance_id: str) -> str | None:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return str(reservations[0]["Instances"][0]["State"]["Name"])
    except (ClientError, BotoCoreError, IndexError, KeyError):
        return None
