"""``lookup('simpletrader_config', PATH)``: the checked stack config, as ``python -m provision config --json``.

Runs provision's own checks in Ansible's process (no second interpreter to
start): a bad stack config fails the lookup with the very lines ``plan``
prints. The repository root (this file's grandparent) is put on the import
path, so ``provision`` is found wherever ansible-playbook is run from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: simpletrader_config
short_description: the checked stack config with its defaults and derived values
description:
  - Reads the stack config with provision's own schema and returns what `python -m provision config --json` prints.
options:
  _terms:
    description: the stack config's path
    required: true
"""

ROOT = Path(__file__).resolve().parents[2]


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[Any]:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from provision import config
        from provision.errors import ConfigError
        from provision.export import export

        try:
            return [export(config.load(str(terms[0])))]
        except ConfigError as exc:
            raise AnsibleError(str(exc)) from None
