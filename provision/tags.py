"""Tag keys and values: the one place in code (docs/CONTRACTS.md, "Tags").

Every resource ``provision`` creates carries Project/Stack/ManagedBy and a
``Name`` of ``<stack>-<resource>``; the instance also carries ``Role``.
Resources are found again by these tags (or by their fixed names), never by a
local state file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PROJECT_KEY = "Project"
PROJECT_VALUE = "simpletrader"
STACK_KEY = "Stack"
MANAGED_BY_KEY = "ManagedBy"
MANAGED_BY_VALUE = "simpletrader-provision"
NAME_KEY = "Name"
ROLE_KEY = "Role"
HOST_ROLE_VALUE = "trading-host"
#: On the special sessions' schedule group: a digest of ``calendar.special_sessions`` as the last ``up``
#: deployed them. The host's cron entries follow the sessions only through Ansible; a changed digest is how
#: ``plan``/``up`` know to say so.
SESSIONS_DIGEST_KEY = "SpecialSessions"


def resource_name(stack: str, resource: str) -> str:
    """``<stack>-<resource>``, e.g. ``simpletrader-host``."""
    return f"{stack}-{resource}"


def stack_tags(stack: str) -> dict[str, str]:
    return {PROJECT_KEY: PROJECT_VALUE, STACK_KEY: stack, MANAGED_BY_KEY: MANAGED_BY_VALUE}


def resource_tags(stack: str, resource: str, **extra: str) -> dict[str, str]:
    """The full tag set of one resource: stack tags, ``Name`` and any extra (e.g. ``Role``)."""
    tags = stack_tags(stack)
    tags[NAME_KEY] = resource_name(stack, resource)
    tags.update(extra)
    return tags


def to_aws(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` -> ``[{"Key": "k", "Value": "v"}]`` (sorted, so calls are deterministic)."""
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def from_aws(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in tags or []}


def ec2_filters(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """EC2 describe filters that match every tag in ``tags``."""
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())]


def tag_spec(resource_type: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """An EC2 ``TagSpecifications`` value: tags applied atomically with the create call."""
    return [{"ResourceType": resource_type, "Tags": to_aws(tags)}]


def is_ours(tags: Mapping[str, str], stack: str) -> bool:
    return all(tags.get(k) == v for k, v in stack_tags(stack).items())
