"""Mitogen's SSH gets the ControlPath Ansible's own SSH plugin would use (plugins/strategy/mitogen_linear.py).

Without it, Mitogen opens a new SSH connection (and through Session Manager a
new session) on every run, although ``ssh_args`` ask for ``ControlPersist``.
BENCHMARKS.md has what it saves; tests/ansible/test_ansible_site.py shows
the shared connection on a test host.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleError
from ansible.plugins.connection.ssh import Connection as AnsibleSSH

from tests.ansible.helpers_ansible import ROOT

SHIM = ROOT / "plugins" / "strategy" / "mitogen_linear.py"


def shim() -> Any:
    spec = importlib.util.spec_from_file_location("mitogen_linear_under_test", SHIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Spec:
    """The parts of Mitogen's PlayContextSpec the arguments are built from."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def _connection_option(self, name: str, fallback_attr: str | None = None) -> Any:
        return self.options.get(name)

    def remote_addr(self) -> str:
        return "i-0123456789abcdef0"

    def port(self) -> None:
        return None

    def remote_user(self) -> str:
        return "ec2-user"

    def mitogen_via(self) -> str | None:
        return self.options.get("mitogen_via")


PROJECT_SSH_ARGS = configparser.ConfigParser(interpolation=None)
PROJECT_SSH_ARGS.read(ROOT / "ansible.cfg")


def test_the_project_ssh_args_ask_for_a_persistent_connection() -> None:
    assert "ControlPersist=" in PROJECT_SSH_ARGS["ssh_connection"]["ssh_args"]


def test_a_persistent_connection_gets_ansibles_control_path_in_a_private_directory(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"
    spec = Spec(ssh_args=PROJECT_SSH_ARGS["ssh_connection"]["ssh_args"],
                ssh_common_args='-o ProxyCommand="inventory/ssm-tunnel --region ap-south-1 %h %p"',
                control_path_dir=str(directory))
    args = shim().ssh_args_with_control_path(spec)
    wanted = AnsibleSSH._create_control_path("i-0123456789abcdef0", None, "ec2-user") % {"directory": directory}
    assert args[-2:] == ["-o", f'ControlPath="{wanted}"']
    assert args[:-2] == [*PROJECT_SSH_ARGS["ssh_connection"]["ssh_args"].split(),
                         "-o", "ProxyCommand=inventory/ssm-tunnel --region ap-south-1 %h %p"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # ssh refuses to start without it


def test_a_control_path_given_or_no_persistence_is_left_as_it_is(tmp_path: Path) -> None:
    directory = tmp_path / "cp"
    given = Spec(ssh_args="-o ControlMaster=auto -o ControlPersist=60s",
                 ssh_extra_args="-o ControlPath=/run/mine/%C", control_path_dir=str(directory))
    assert [a for a in shim().ssh_args_with_control_path(given) if "ControlPath" in a] == ["ControlPath=/run/mine/%C"]
    none = Spec(ssh_args="-o ServerAliveInterval=30", control_path_dir=str(directory))
    assert shim().ssh_args_with_control_path(none) == ["-o", "ServerAliveInterval=30"]
    # Through a mitogen_via hop that ssh runs on the hop, where the controller's directory is not.
    via = Spec(ssh_args="-o ControlPersist=60s", control_path_dir=str(directory), mitogen_via="bastion")
    assert shim().ssh_args_with_control_path(via) == ["-o", "ControlPersist=60s"]
    assert not directory.exists()


def test_ansible_control_path_setting_is_honoured(tmp_path: Path) -> None:
    spec = Spec(ssh_args="-o ControlPersist=60s", control_path_dir=str(tmp_path),
                control_path="%(directory)s/mine-%%C")
    assert shim().ssh_args_with_control_path(spec)[-1] == f'ControlPath="{tmp_path}/mine-%C"'


def test_loading_the_strategy_twice_keeps_mitogen_s_own_ssh_args(tmp_path: Path) -> None:
    """A second load wraps Mitogen's function, not the first load's wrapper (which would still add one
    ControlPath, since it leaves arguments that have one alone: what tells is the function kept)."""
    shim()
    spec = Spec(ssh_args="-o ControlPersist=60s", control_path_dir=str(tmp_path))
    assert shim()._mitogen_ssh_args(spec) == ["-o", "ControlPersist=60s"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs an ssh client (apt-get install openssh-client)")
def test_ssh_reads_the_control_path_whole_with_a_space_in_it(tmp_path: Path) -> None:
    """What ssh itself makes of the arguments (``ssh -G`` prints its resolved configuration)."""
    directory = tmp_path / "Jane Doe" / ".ansible" / "cp"
    args = shim().ssh_args_with_control_path(Spec(ssh_args="-o ControlMaster=auto -o ControlPersist=60s",
                                                  control_path_dir=str(directory)))
    resolved = subprocess.run(["ssh", "-G", *args, "i-0123456789abcdef0"], capture_output=True, text=True,
                              check=False)
    assert resolved.returncode == 0, resolved.stderr
    wanted = AnsibleSSH._create_control_path("i-0123456789abcdef0", None, "ec2-user") % {"directory": directory}
    assert f"controlpath {wanted}" in resolved.stdout.splitlines()


def test_a_control_directory_it_cannot_write_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "cp"
    directory.mkdir(mode=0o500)
    spec = Spec(ssh_args="-o ControlPersist=60s", control_path_dir=str(directory))
    module = shim()
    # Root may write anywhere, so the refusal is given rather than provoked (the suite runs as root).
    monkeypatch.setattr(module.os, "access", lambda path, mode: not (path == str(directory) and mode == os.W_OK))
    with pytest.raises(AnsibleError, match=f"Cannot write to ControlPath {directory}"):
        module.ssh_args_with_control_path(spec)
