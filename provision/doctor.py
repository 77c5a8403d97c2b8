"""``python -m provision doctor``: is this machine ready to operate the stack, and what to fix if not.

Each check says ``ok``, ``FAIL`` (with the fix) or ``note``. The local ones
(:func:`local_checks`: Python, Ansible and the collections the inventory and
roles use, an ``ssh`` client, the Session Manager plugin in ``access: ssm``)
need no AWS call; ``plan`` and ``up``
run them too and print a one-line hint when one fails. :func:`checks` adds
what needs AWS: credentials and region, the host, the key file, and in
``access: ssh`` whether this machine's address may reach port 22 and
whether SSH already knows the host's key (Ansible's Mitogen strategy refuses
a key it has not seen; through Session Manager the key is not checked).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from provision import access, network, publicip
from provision.config import Config
from provision.engine import Context
from provision.errors import ProvisionError
from provision.instance import find_instance, public_address
from provision.keypair import key_name

MIN_PYTHON = (3, 11)  # ansible-core 2.19 runs on 3.11 or newer
# The collections the inventory and the roles use, and what for.
COLLECTIONS = {
    "amazon.aws": "the dynamic inventory, inventory/aws_ec2.yml",
    "community.general": "the trader_cron role's community.general.timezone",
}
KEY_ENV = "ST_SSH_KEY"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | FAIL | note
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _fail(name: str, detail: str) -> Check:
    return Check(name, "FAIL", detail)


# --------------------------------------------------------------------------- local (no AWS call)


def python_check(version: tuple[int, ...] | None = None) -> Check:
    version = tuple(version or sys.version_info[:3])
    shown = ".".join(str(v) for v in version)
    if version[:2] >= MIN_PYTHON:
        return _ok("python", f"{shown} ({sys.executable})")
    return _fail("python", f"{shown} is too old: ansible-core 2.19 needs Python 3.11 or newer; install 3.11+ and "
                 "run `make setup` with it (PYTHON=python3.11 make setup)")


def ansible_check() -> Check:
    playbook = shutil.which("ansible-playbook")
    found = []
    for name, used_by in COLLECTIONS.items():
        spec = importlib.util.find_spec(f"ansible_collections.{name}")
        if spec is None or not spec.submodule_search_locations:
            return _fail("ansible", f"the collection {name} ({used_by}) is missing; `make setup` installs it "
                         "(the ansible package on PyPI bundles it)")
        manifest = Path(list(spec.submodule_search_locations)[0]) / "MANIFEST.json"
        try:
            version = json.loads(manifest.read_text())["collection_info"]["version"]
        except (OSError, ValueError, KeyError):
            version = "?"
        found.append(f"{name} {version}")
    if playbook is None:
        return _fail("ansible", "ansible-playbook is not on PATH; activate the virtualenv: . .venv/bin/activate")
    return _ok("ansible", f"{playbook}; {', '.join(found)}")


def ssh_check() -> Check:
    """Ansible reaches the host with OpenSSH's client in both access modes (through the tunnel with ssm)."""
    found = shutil.which("ssh")
    if found is None:
        return _fail("ssh", "no ssh client on PATH: Ansible connects with OpenSSH's ssh in both access modes; "
                     "install it (Debian/Ubuntu: apt-get install openssh-client; Amazon Linux/Fedora: "
                     "dnf install openssh-clients; macOS has it) or put its directory on PATH")
    return _ok("ssh", found)


def plugin_check(cfg: Config) -> Check | None:
    if cfg.network.access != "ssm":
        return None
    path = access.plugin_path()
    version = access.plugin_version(path) if path else None
    if path is None or version is None:
        return _fail("session manager", access.plugin_missing_message())
    return _ok("session manager", f"{access.PLUGIN} {version} ({path})")


def local_checks(cfg: Config) -> list[Check]:
    found = [python_check(), ansible_check(), ssh_check(), plugin_check(cfg)]
    return [c for c in found if c is not None]


def hints(cfg: Config) -> list[str]:
    """One line per failed local check, for ``plan`` and ``up``."""
    return [f"hint: {c.name}: {c.detail} (`python -m provision doctor` checks everything)"
            for c in local_checks(cfg) if c.failed]


# --------------------------------------------------------------------------- with AWS


def credentials_check(ctx: Context) -> Check:
    try:
        who = ctx.clients.client("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        return _fail("credentials", f"{exc}; configure them (aws configure, AWS_PROFILE=..., or "
                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and run doctor again")
    return _ok("credentials", f"{who['Arn']} (account {who['Account']}), region {ctx.cfg.stack.region} "
               "from stack.region")


def key_check(ctx: Context) -> Check:
    path = Path(os.environ.get(KEY_ENV) or f"{key_name(ctx.stack)}.pem")
    write = f"`python -m provision key --out {path}`"
    try:
        st = path.stat()
    except FileNotFoundError:
        return _fail("key file", f"{path} does not exist; write it with {write} (SSH needs it in both access modes)")
    except OSError as exc:
        return _fail("key file", f"{path}: {exc.strerror}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return _fail("key file", f"{path} is mode {stat.S_IMODE(st.st_mode):04o}; ssh refuses a key others can "
                     f"read: chmod 400 {path}")
    return _ok("key file", f"{path} (mode {stat.S_IMODE(st.st_mode):04o})")


def host_check(ctx: Context, inst: dict[str, Any] | None) -> Check:
    if inst is None:
        return _fail("host", f"stack {ctx.stack} has no trading host; create it with `python -m provision up`")
    iid, state = inst["InstanceId"], (inst.get("State") or {}).get("Name")
    if state == "running":
        return _ok("host", f"{iid} running")
    return Check("host", "note", f"{iid} is {state}: Ansible can reach it only while it runs; "
                 "`python -m provision start --wait-ready` starts it outside the schedule")


def ingress_check(ctx: Context) -> Check | None:
    """``access: ssh``: may this machine's address reach port 22?"""
    net = ctx.cfg.network
    if net.access != "ssh":
        return None
    lookup = ctx.options.get("public_ip_lookup") or publicip.lookup
    try:
        here = lookup()
    except ProvisionError as exc:
        return _fail("ssh ingress", str(exc))
    if net.auto_ingress:
        return _ok("ssh ingress", f"auto: your address is {here}; `python -m provision plan` shows whether the "
                   "security group still has it (an address that changed needs `up`)")
    address = ipaddress.ip_network(here).network_address
    if any(address in ipaddress.ip_network(c) for c in network.ssh_ingress(ctx)):
        return _ok("ssh ingress", f"your address {here} is inside network.ssh_ingress")
    return _fail("ssh ingress", f"your address {here} is not in network.ssh_ingress "
                 f"{list(net.ssh_ingress)}: add it (or use auto) and run `python -m provision up`")


def host_key_check(ctx: Context, inst: dict[str, Any] | None) -> Check | None:
    """``access: ssh``: does SSH know the host's key (``ssh-keygen -F`` in the user's known_hosts)?"""
    cfg = ctx.cfg
    if cfg.network.access != "ssh":
        return None
    keygen = shutil.which("ssh-keygen")
    if not keygen:
        return None  # before any AWS call: nothing to look in without it
    ip, _static = public_address(ctx, inst)
    if not ip:
        return None
    known = Path(ctx.options.get("known_hosts") or Path.home() / ".ssh" / "known_hosts")
    found = subprocess.run([keygen, "-F", ip, "-f", str(known)], capture_output=True, check=False).returncode == 0
    if found:
        return _ok("host key", f"{ip} is in {known}")
    pem = os.environ.get(KEY_ENV) or f"{key_name(ctx.stack)}.pem"
    return _fail("host key", f"{ip} is not in {known}, and Ansible (Mitogen) refuses a host key it has not seen: "
                 f"connect once with `ssh -i {pem} -o StrictHostKeyChecking=ask {cfg.host.user}@{ip} true` and "
                 "compare the fingerprint it shows with the instance's console output (EC2 console: Monitor and "
                 "troubleshoot, Get system log) before answering yes")


def checks(ctx: Context) -> list[Check]:
    found = local_checks(ctx.cfg)
    creds = credentials_check(ctx)
    found.append(creds)
    inst = None if creds.failed else find_instance(ctx)
    if not creds.failed:
        found += [host_check(ctx, inst), key_check(ctx)]
    ingress = ingress_check(ctx)
    if ingress is not None:
        found.append(ingress)
    if not creds.failed:
        known = host_key_check(ctx, inst)
        if known is not None:
            found.append(known)
    return found


def render(ctx: Context, found: list[Check]) -> list[str]:
    width = max(len(c.name) for c in found)
    lines = [f"doctor: stack {ctx.stack} ({ctx.cfg.stack.region}), network.access {ctx.cfg.network.access}"]
    lines += [f"  {c.status:<4}  {c.name:<{width}}  {c.detail}" for c in found]
    failed = sum(c.failed for c in found)
    lines.append(f"{failed} problem{'s' if failed != 1 else ''}; fix each as its line says, then run doctor again."
                 if failed else "Everything needed to operate the stack from here is in place.")
    return lines
