"""The ``mitogen_linear`` strategy (Mitogen for Ansible), found here by ansible.cfg's ``strategy_plugins``.

Mitogen keeps one Python interpreter per host for the whole run and sends it
only what a task needs, instead of starting Python and shipping a module per
task: the same tasks in the same order as ``linear``, at a fraction of the
round trips. ``ansible_mitogen`` comes from the ``mitogen`` package in
requirements.txt; this file only makes its strategy findable without a path
into the virtualenv. ``ANSIBLE_STRATEGY=linear`` runs without it.
"""

from __future__ import annotations

import ansible_mitogen.loaders
import ansible_mitogen.strategy

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):  # type: ignore[misc, valid-type]
    pass
