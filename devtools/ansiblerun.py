"""Reaching the test host with Ansible: the tunnel stand-in's environment, the inventory's one host, the
PLAY RECAP, and the ansible.cfg of Ansible's defaults the benchmark and aws-check compare against."""

from __future__ import annotations

import sys
from pathlib import Path

from devtools.testhost import BIN, ROOT, DayFailed, run


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
