"""The ``mitogen_linear`` strategy (Mitogen for Ansible), found here by ansible.cfg's ``strategy_plugins``.

Mitogen keeps one Python interpreter per host for the whole run and sends it
only what a task needs, instead of starting Python and shipping a module per
task: the same tasks in the same order as ``linear``, at a fraction of the
round trips. ``ansible_mitogen`` comes from the ``mitogen`` package in
requirements.txt; this file only makes its strategy findable without a path
into the virtualenv. ``ANSIBLE_STRATEGY=linear`` runs without it.

It also gives Mitogen's SSH the ControlPath that Ansible's own SSH plugin
would use. Mitogen passes ``ssh_args`` (``ControlMaster=auto``,
``ControlPersist=60s``) but never adds a ControlPath, so without one every run
opened a new SSH connection and, through Session Manager, a new session. With
it, a run within a minute of the last one goes through that run's connection,
as Ansible's SSH plugin does, and the long steps that use that plugin
(playbooks/README.md) share it. The directory is Ansible's
``control_path_dir`` (``ANSIBLE_SSH_CONTROL_PATH_DIR``), made 0700 as Ansible
makes it: ssh refuses to start when it is missing.
"""

from __future__ import annotations

import os
from typing import Any

import ansible_mitogen.loaders
import ansible_mitogen.strategy
import ansible_mitogen.transport_config
from ansible.errors import AnsibleError
from ansible.plugins.connection.ssh import Connection as AnsibleSSH
from ansible.utils.path import makedirs_safe, unfrackpath

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)
_Spec = ansible_mitogen.transport_config.PlayContextSpec
# Mitogen's own, kept once: a second load of this file must not wrap the wrapper.
_mitogen_ssh_args = getattr(_Spec, "_mitogen_ssh_args", _Spec.ssh_args)
_Spec._mitogen_ssh_args = _mitogen_ssh_args


def ssh_args_with_control_path(spec: Any) -> list[str]:
    """Mitogen's SSH arguments, plus the ControlPath Ansible's SSH plugin would add to them (not for a
    host reached through ``mitogen_via``: that ssh runs on the hop, where this directory is not)."""
    args: list[str] = list(_mitogen_ssh_args(spec))
    persist, has_path = AnsibleSSH._persistence_controls([a.encode() for a in args])  # Ansible's own scan
    if not persist or has_path or spec.mitogen_via():
        return args
    directory = unfrackpath(spec._connection_option("control_path_dir"))
    makedirs_safe(directory, 0o700)
    if not os.access(directory, os.W_OK):
        raise AnsibleError(f"Cannot write to ControlPath {directory}")  # Ansible's SSH plugin's own words
    path = spec._connection_option("control_path") or AnsibleSSH._create_control_path(
        spec.remote_addr(), spec.port(), spec.remote_user())
    # Quoted as Ansible quotes it: ssh splits an -o value at white space.
    return [*args, "-o", 'ControlPath="%s"' % (path % {"directory": directory})]


_Spec.ssh_args = ssh_args_with_control_path


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):  # type: ignore[misc, valid-type]
    pass
