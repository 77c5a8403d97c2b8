"""A small declarative schema for the stack config: each key with its type, default, checks and messages.

A section is a frozen dataclass whose fields are declared with :func:`key`::

    @dataclass(frozen=True)
    class ScheduleConfig:
        timezone: str = key(string, iana_zone)                          # required
        agent_wait_seconds: int = key(whole(10, 840), default=300)

A check is a function ``(value, context) -> value`` that returns the value
(converted if need be) or raises :class:`Problem` with the message the
operator reads after the key's path (a list check may name items:
``Problem.at("[1]", ...)``). A section may declare ``CROSS_CHECKS``:
functions ``(values, context) -> [(key, message), ...]`` that judge keys
together; they see None for a key that failed its own checks. Nothing here
knows the stack config's keys: they are in :mod:`provision.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DOCS = "see docs/CONFIG.md"


class Problem(Exception):
    """What is wrong with a value, and the fix: ``items`` are ``(sub-path, message)`` pairs."""

    def __init__(self, message: str = "", items: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.items = items if items is not None else [("", message)]

    @classmethod
    def at(cls, where: str, message: str) -> Problem:
        return cls(message, [(where, message)])


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass
class Context:
    """What checks may look at besides the value: the environment, today, the sections checked so far."""

    env: Mapping[str, str]
    today: Any
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)


Check = Callable[[Any, Context], Any]
CrossCheck = Callable[[dict[str, Any], Context], list[tuple[str, str]]]


def key(*checks: Check, default: Any = REQUIRED, default_from: Callable[[dict[str, Any]], Any] | None = None,
        doc_default: str | None = None) -> Any:
    """A config key: ``checks`` run in order on the given (or default) value.

    ``default_from`` computes the default from the section's keys declared before this one (e.g. the AMI
    parameter from the architecture); ``doc_default`` is how docs/CONFIG.md writes such a default.
    """
    meta = {"checks": checks, "default": default, "default_from": default_from, "doc_default": doc_default}
    return field(default=None, metadata=meta)


def spec(cls: type) -> list[dataclasses.Field[Any]]:
    """The keys of a section class, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "checks" in f.metadata]


def required(f: dataclasses.Field[Any]) -> bool:
    return f.metadata["default"] is REQUIRED and f.metadata["default_from"] is None


def closest(word: str, options: list[str]) -> str | None:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown(path: str, raw: Mapping[str, Any], known: list[str], what: str = "key") -> list[tuple[str, str]]:
    """``(path, message)`` for every key of ``raw`` that is not ``known``, with a did-you-mean hint."""
    found = []
    for k in raw:
        if k in known:
            continue
        hint = closest(str(k), known)
        extra = f"; did you mean '{hint}'?" if hint else f"; known {what}s: {', '.join(known)}"
        found.append((f"{path}.{k}" if path else str(k), f"unknown {what}{extra}"))
    return found


class Problems:
    """Every problem found, as ``(key.path, message)``, in the order found."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    @property
    def lines(self) -> list[str]:
        return [f"{path}: {message}" for path, message in self.items]


def read_section(cls: type, raw: Any, path: str, problems: Problems, ctx: Context,
                 optional: bool = False) -> dict[str, Any]:
    """The checked values of one section; a key that fails its checks is None, its problems reported."""
    names = [f.name for f in spec(cls)]
    if raw is None and optional:
        raw = {}
    if not isinstance(raw, Mapping):
        if raw is None:
            problems.add(path, f"is missing; add a '{path}:' section ({DOCS})")
        else:
            problems.add(path, f"must be a mapping with keys {', '.join(names)}")
        return dict.fromkeys(names)
    for where, message in unknown(path, raw, names):
        problems.add(where, message)
    values: dict[str, Any] = {}
    for f in spec(cls):
        meta, where = f.metadata, f"{path}.{f.name}"
        if f.name in raw:
            value = raw[f.name]
        elif meta["default_from"] is not None:
            value = meta["default_from"](values)
        elif meta["default"] is REQUIRED:
            problems.add(where, f"is missing (required; {DOCS})")
            values[f.name] = None
            continue
        else:
            value = meta["default"]
        try:
            for check in meta["checks"]:
                value = check(value, ctx)
        except Problem as exc:
            for sub, message in exc.items:
                problems.add(where + sub, message)
            value = None
        values[f.name] = value
    for cross in getattr(cls, "CROSS_CHECKS", ()):
        for name, message in cross(values, ctx):
            problems.add(f"{path}.{name}" if name else path, message)
    return values


def build(cls: type, values: dict[str, Any]) -> Any:
    return cls(**{f.name: values[f.name] for f in spec(cls)})


def records(cls: type, example: str) -> Check:
    """A list of mappings, each one ``cls`` record; returns a tuple of ``cls``. Problems name the item."""

    def check(value: Any, ctx: Context) -> tuple[Any, ...]:
        items: list[tuple[str, str]] = []
        found = []
        for idx, item in enumerate(as_list(value, ctx)):
            if not isinstance(item, Mapping):
                items.append((f"[{idx}]", f"must be a mapping like {example}"))
                continue
            local = Problems()
            values = read_section(cls, item, f"[{idx}]", local, ctx)
            items += local.items
            if not local.items:
                found.append(build(cls, values))
        if items:
            raise Problem("", items)
        return tuple(found)

    return check


def each(check: Check) -> Check:
    """A list whose every item passes ``check``; problems name the item's index."""

    def checked(value: Any, ctx: Context) -> tuple[Any, ...]:
        items: list[tuple[str, str]] = []
        found = []
        for idx, item in enumerate(as_list(value, ctx)):
            try:
                found.append(check(item, ctx))
            except Problem as exc:
                items += [(f"[{idx}]{sub}", message) for sub, message in exc.items]
        if items:
            raise Problem("", items)
        return tuple(found)

    return checked


def as_list(value: Any, ctx: Context) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):  # YAML gives lists; a key's default may be a tuple
        raise Problem(f"must be a list (use [] for none), got {value!r}")
    return list(value)


# --------------------------------------------------------------------------- value checks shared by keys


def nested(cls: type) -> Check:
    """A mapping of ``cls``'s keys inside a section (e.g. ``bucket.prefixes``); returns a ``cls``."""

    def check(value: Any, ctx: Context) -> Any:
        local = Problems()
        values = read_section(cls, value, "", local, ctx, optional=True)
        if local.items:
            # Paths read_section made under "" are ".key" already; an unknown key's is the bare key.
            raise Problem("", [(path if path.startswith(("[", ".")) or not path else f".{path}", message)
                               for path, message in local.items])
        return build(cls, values)

    return check


def optional(check: Check) -> Check:
    """``check``, except that an empty value (``""`` or ``null``) stands for "not given" and stays ``""``."""

    def checked(value: Any, ctx: Context) -> Any:
        return "" if value in ("", None) else check(value, ctx)

    return checked


def string(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problem(f"must be a non-empty string, got {value!r}")
    return value


def text(value: Any, ctx: Context) -> str:
    """A string that may be empty (``null`` counts as empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Problem(f"must be a string, got {value!r}")
    return value


def hhmm(value: Any, ctx: Context) -> str:
    import re

    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 08:45 as the base-60 integer 525.
        h, m = divmod(value, 60)
        raise Problem(f'was read as the number {value}; quote the time: "{h:02d}:{m:02d}"')
    if not isinstance(value, str) or not re.match(r"^([01]\d|2[0-3]):([0-5]\d)$", value):
        raise Problem(f'{value!r} is not a time in 24-hour HH:MM (two digits each), e.g. "08:45"')
    return value


def whole(lo: int, hi: int) -> Check:
    def check(value: Any, ctx: Context) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise Problem(f"must be a whole number from {lo} to {hi}, got {value!r}")
        return value

    return check


def boolean(value: Any, ctx: Context) -> bool:
    if not isinstance(value, bool):
        raise Problem(f"must be true or false, got {value!r}")
    return value


def date(value: Any, ctx: Context) -> str:
    """A calendar date, returned as ``YYYY-MM-DD``."""
    import datetime as dt
    import re

    if isinstance(value, dt.date):
        return value.isoformat()
    if re.match(r"^\d{4}-\d{2}-\d{2}$", str(value)):
        try:
            return dt.date.fromisoformat(str(value)).isoformat()
        except ValueError:
            pass
    raise Problem(f'{value!r} is not a date in YYYY-MM-DD form, e.g. "2026-12-31"')


def relpath(value: Any, ctx: Context) -> str:
    """A path inside the workspace: relative, without ``..`` (empty allowed: the key decides)."""
    from pathlib import PurePosixPath

    if isinstance(value, str) and (value.startswith("/") or ".." in PurePosixPath(value).parts):
        raise Problem(f"{value!r} must be a path relative to the workspace, without '..'")
    return str(value)


def matches(pattern: str, message: str) -> Any:
    """The value matches ``pattern``; ``message`` (with ``{value!r}``) says what it should be."""
    compiled = re.compile(pattern)

    def check(value: Any, ctx: Context) -> Any:
        if not compiled.match(value):
            raise Problem(message.format(value=value))
        return value

    return check


def one_of(options: tuple[str, ...], message: str) -> Any:
    def check(value: Any, ctx: Context) -> Any:
        if value not in options:
            raise Problem(message.format(value=value, options=", ".join(options)))
        return value

    return check


def distinct(what: str) -> Any:
    """No item twice (after the item checks): ``'<item> is listed twice'`` at the second one."""

    def check(values: tuple[Any, ...], ctx: Context) -> tuple[Any, ...]:
        seen: list[Any] = []
        items = []
        for idx, v in enumerate(values):
            if v in seen:
                items.append((f"[{idx}]", f"{v} is listed twice"))
            seen.append(v)
        if items:
            raise Problem("", items)
        return values

    return check


def not_empty(message: str) -> Any:
    def check(values: tuple[Any, ...], ctx: Context) -> tuple[Any, ...]:
        if not values:
            raise Problem(message)
        return values

    return check


def cidr(lo: int, hi: int) -> Any:
    def check(value: Any, ctx: Context) -> str:
        return str(network(value, lo, hi))

    return check


def network(value: Any, lo: int, hi: int) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise Problem(f'must be an IPv4 CIDR string like "10.42.0.0/16", got {value!r}')
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Problem(f'{value!r} is not an IPv4 CIDR, e.g. "10.42.0.0/16" or "203.0.113.7/32"') from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise Problem(f"{value!r} is IPv6; only IPv4 CIDRs are supported here")
    if "/" not in value:
        raise Problem(f'{value!r} has no prefix length; write it as "{value}/32"')
    if str(net) != value:
        raise Problem(f'{value!r} has host bits set; did you mean "{net}"?')
    if not lo <= net.prefixlen <= hi:
        raise Problem(f"{value!r}: the prefix length must be /{lo} to /{hi}")
    return net
