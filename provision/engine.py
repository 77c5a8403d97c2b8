"""The small engine: resources in dependency order, plan, apply (up) and destroy (down).

Each resource kind subclasses :class:`Resource` and says how to *find* its
live state (by tags or fixed name), what it *wants* (normalised attributes),
and how to *create*, *update* and *delete* itself. Every mutation a ``create``
makes after its first, atomic, tagged create call is also an attribute the
diff compares, so a run interrupted half-way through a resource is finished
by the next ``up`` as an update rather than duplicated.

``plan`` is read-only. ``apply`` walks the resources forward, re-reading each
one just before acting on it; ``destroy`` walks them in reverse.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.errors import ProvisionError

if TYPE_CHECKING:
    from provision.aws import Clients
    from provision.config import Config


class _Unknown:
    """A value only known after an earlier resource is created (shown as ``(known after apply)``)."""

    def __repr__(self) -> str:
        return "(known after apply)"

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0


UNKNOWN: Any = _Unknown()
SENSITIVE_ATTRS = frozenset({"private_key"})


def _unknown(value: Any) -> bool:
    """Whether a wanted value is, or holds, one known only after apply."""
    return value is UNKNOWN or (isinstance(value, (list, tuple)) and any(v is UNKNOWN for v in value))


@dataclass
class Context:
    """What every resource needs: config, clients and the ids earlier resources produced."""

    cfg: Config
    clients: Clients
    ids: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def stack(self) -> str:
        return self.cfg.stack.name

    def id(self, key: str) -> Any:
        """An id produced by an earlier resource, or UNKNOWN while planning a stack not yet created."""
        return self.ids.get(key, UNKNOWN)

    def need(self, key: str) -> Any:
        value = self.ids.get(key)
        if value is None:
            raise ProvisionError(f"internal ordering problem: {key} is not known yet")
        return value


class Resource:
    """One resource kind. Subclasses set ``address`` and implement the hooks."""

    address = ""
    #: ``down`` keeps it unless the named option is true (e.g. bucket: ``delete_bucket``).
    keep_unless: str | None = None

    def label(self, ctx: Context) -> str:
        return ""

    def enabled(self, ctx: Context) -> bool:
        return True

    def find(self, ctx: Context) -> dict[str, Any] | None:
        raise NotImplementedError

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        """Record ids of the live resource in ``ctx.ids`` for later resources."""

    def desired(self, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def create(self, ctx: Context) -> None:
        raise NotImplementedError

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        raise NotImplementedError

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        raise NotImplementedError

    def check_delete(self, ctx: Context, live: dict[str, Any]) -> None:
        """Raise before anything is deleted if this resource cannot be (e.g. a non-empty bucket)."""

    def check_live(self, ctx: Context, live: dict[str, Any] | None) -> None:
        """Raise (ProvisionError) when what was found, or the config, rules out ``up`` for this resource (a
        bucket of another stack, a policy that does not exist): ``plan`` and ``up`` stop before any change.
        ``down`` does not ask."""

    def owned(self, ctx: Context, live: dict[str, Any]) -> bool:
        """Whether the found resource is this stack's to remove (``down`` leaves it alone otherwise)."""
        return True

    def check_update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        """Raise (ProvisionError) when these differences cannot be applied in place (a VPC's CIDR, a running
        host's type): ``plan`` shows the reason, and ``up`` stops before changing anything."""

    def note(self, ctx: Context, live: dict[str, Any] | None) -> str:
        """A line ``plan`` shows with the resource, changed or not (e.g. who the bucket's operators are);
        ``live`` is what ``find`` found (None: the resource is to be created)."""
        return ""


@dataclass
class Diff:
    attr: str
    old: Any
    new: Any


@dataclass
class Change:
    address: str
    label: str
    action: str  # "create" | "update" | "delete" | "noop"
    diffs: list[Diff] = field(default_factory=list)
    live: dict[str, Any] | None = None
    note: str = ""
    blocked: str = ""  # why the update cannot be applied in place (check_update); empty when it can

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "name": self.label,
            "action": self.action,
            "changes": [
                {"attribute": d.attr, "old": _jsonable(d.attr, d.old), "new": _jsonable(d.attr, d.new)}
                for d in self.diffs
            ],
            **({"note": self.note} if self.note else {}),
            **({"blocked": self.blocked} if self.blocked else {}),
        }


def _jsonable(attr: str, value: Any) -> Any:
    if attr in SENSITIVE_ATTRS and value is not None:
        return "(sensitive)"
    if value is UNKNOWN:
        return "(known after apply)"
    return json.loads(json.dumps(value, default=str))


def compare(live: dict[str, Any], want: dict[str, Any]) -> list[Diff]:
    """Attributes whose live value differs from the wanted one (keys of ``want`` only)."""
    return [Diff(k, live.get(k), v) for k, v in want.items() if live.get(k) != v]


@dataclass
class Plan:
    changes: list[Change]

    @property
    def counts(self) -> tuple[int, int, int]:
        add = sum(c.action == "create" for c in self.changes)
        change = sum(c.action == "update" for c in self.changes)
        destroy = sum(c.action == "delete" for c in self.changes)
        return add, change, destroy

    @property
    def empty(self) -> bool:
        return self.counts == (0, 0, 0)

    def summary(self) -> str:
        add, change, destroy = self.counts
        return f"Plan: {add} to add, {change} to change, {destroy} to destroy."

    def render(self) -> str:
        lines = []
        symbols = {"create": "+", "update": "~", "delete": "-"}
        for c in self.changes:
            name = f" ({c.label})" if c.label else ""
            if c.action == "noop":
                if c.note:
                    lines.append(f"    {c.address}{name}: {c.note}")
                continue
            lines.append(f"  {symbols[c.action]} {c.address}{name}")
            for d in c.diffs:
                lines.append(f"      {d.attr}: {_show(d.attr, d.old)} -> {_show(d.attr, d.new)}")
            if c.note:
                lines.append(f"      # {c.note}")
            if c.blocked:
                lines.append(f"      # cannot be applied in place: {c.blocked}")
        if not any(c.action != "noop" for c in self.changes):
            lines.append("No changes. The live stack matches the config.")
        lines.append(self.summary())
        return "\n".join(lines)

    def check_applicable(self) -> None:
        """Raise, before anything is changed, when a planned update cannot be applied in place."""
        blocked = [c.blocked for c in self.changes if c.blocked]
        if blocked:
            raise ProvisionError("; ".join(blocked) + ". Nothing was changed.")

    def as_json(self) -> dict[str, Any]:
        add, change, destroy = self.counts
        return {
            "changes": [c.as_json() for c in self.changes if c.action != "noop"],
            "summary": {"add": add, "change": change, "destroy": destroy},
        }


def _show(attr: str, value: Any) -> str:
    if attr in SENSITIVE_ATTRS and value is not None:
        return "(sensitive)"
    if value is UNKNOWN:
        return "(known after apply)"
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, default=str)


Progress = Callable[[str], None]


class Engine:
    def __init__(self, resources: list[Resource]) -> None:
        self.resources = resources

    # ------------------------------------------------------------------ up

    def _change_for(self, ctx: Context, r: Resource) -> Change:
        live = r.find(ctx)
        r.check_live(ctx, live)
        if live is not None:
            r.publish(ctx, live)
        if not r.enabled(ctx):
            return Change(r.address, r.label(ctx), "noop", live=live)
        if live is None:
            return Change(r.address, r.label(ctx), "create", note=r.note(ctx, None))
        diffs = compare(live, r.desired(ctx))
        blocked = ""
        known = [d for d in diffs if not _unknown(d.new)]  # a value made later in this run is judged then
        if known:
            try:
                r.check_update(ctx, live, known)
            except ProvisionError as exc:
                blocked = str(exc)
        return Change(r.address, r.label(ctx), "update" if diffs else "noop", diffs, live, note=r.note(ctx, live),
                      blocked=blocked)

    def plan_up(self, ctx: Context) -> Plan:
        return Plan([self._change_for(ctx, r) for r in self.resources])

    def apply(self, ctx: Context, progress: Progress, plan: Plan | None = None) -> Plan:
        """Create or update what differs. With the ``plan`` just made in this context, resources it
        found unchanged are not read again (their ids are already in ``ctx.ids``); a resource whose
        wanted state depended on one not yet created was planned as a change, so it is re-read."""
        if plan is not None:
            plan.check_applicable()
        planned = {c.address: c for c in plan.changes} if plan is not None else {}
        done: list[Change] = []
        for r in self.resources:
            before = planned.get(r.address)
            if before is not None and before.action == "noop":
                done.append(before)
                continue
            change = self._change_for(ctx, r)
            t0 = time.monotonic()
            if change.action == "create":
                progress(f"{r.address}: creating {change.label}".rstrip())
                r.create(ctx)
                # Re-read, then finish anything the create did not (and publish the new ids).
                after = self._change_for(ctx, r)
                # Describe calls are eventually consistent; give a fresh resource a few seconds to show.
                for attempt in range(1, 6):
                    if after.action != "create":
                        break
                    ctx.clients.sleep(float(attempt))
                    after = self._change_for(ctx, r)
                if after.action == "create":
                    raise ProvisionError(
                        f"{r.address}: created but not found again by its tags or name; wait a minute, check "
                        "with `python -m provision plan`, then re-run up")
                if after.action == "update":
                    assert after.live is not None
                    if after.blocked:
                        raise ProvisionError(after.blocked)
                    r.update(ctx, after.live, after.diffs)
                    self._change_for(ctx, r)
                progress(f"{r.address}: created ({time.monotonic() - t0:.1f}s)")
            elif change.action == "update":
                if change.blocked:
                    raise ProvisionError(change.blocked)
                attrs = ", ".join(d.attr for d in change.diffs)
                progress(f"{r.address}: updating {attrs}")
                assert change.live is not None
                r.update(ctx, change.live, change.diffs)
                self._change_for(ctx, r)
                progress(f"{r.address}: updated ({time.monotonic() - t0:.1f}s)")
            done.append(change)
        return Plan(done)

    # ------------------------------------------------------------------ down

    def plan_down(self, ctx: Context) -> Plan:
        changes = []
        for r in self.resources:
            live = r.find(ctx)
            if live is not None and not r.owned(ctx, live):
                changes.append(Change(r.address, r.label(ctx), "noop", live=live,
                                      note="not this stack's: left alone"))
                continue
            if live is not None:
                r.publish(ctx, live)
            if live is None:
                continue
            if r.keep_unless and not ctx.options.get(r.keep_unless):
                flag = "--" + r.keep_unless.replace("_", "-")
                changes.append(
                    Change(
                        r.address, r.label(ctx), "noop", live=live, note=f"kept (pass {flag} to remove it)"
                    )
                )
                continue
            changes.append(Change(r.address, r.label(ctx), "delete", live=live))
        return Plan(list(reversed(changes)))

    def destroy(self, ctx: Context, plan: Plan, progress: Progress) -> None:
        by_address = {r.address: r for r in self.resources}
        deletions = [c for c in plan.changes if c.action == "delete"]
        for c in deletions:
            assert c.live is not None
            by_address[c.address].check_delete(ctx, c.live)
        for c in deletions:
            t0 = time.monotonic()
            progress(f"{c.address}: deleting {c.label}".rstrip())
            assert c.live is not None
            by_address[c.address].delete(ctx, c.live)
            progress(f"{c.address}: deleted ({time.monotonic() - t0:.1f}s)")
