"""``lookup('simpletrader_wheel', PROJECT_DIR, OUT_DIR)``: build the routine's wheel on the controller.

Calls ``provision.wheel.build_wheel`` (the repository's deterministic
builder: the same sources give the same bytes) in Ansible's own process and
returns ``{"path": ..., "sha256": ...}``; the role installs the wheel again
only when that sha256 changes. The repository root is found from this file
(``roles/workspace_sync/lookup_plugins``) and put on the import path.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: simpletrader_wheel
short_description: the host routine's wheel, built on the controller
description:
  - Builds the deterministic wheel of the project at the first term into the directory of the second.
options:
  _terms:
    description: the project directory (with pyproject.toml) and the output directory
    required: true
"""

ROOT = Path(__file__).resolve().parents[3]


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[Any]:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from provision.errors import ProvisionError
        from provision.wheel import build_wheel

        try:
            wheel = build_wheel(Path(terms[0]), Path(terms[1]))
        except ProvisionError as exc:
            raise AnsibleError(f"the routine's wheel: {exc}") from None
        return [{"path": str(wheel), "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
