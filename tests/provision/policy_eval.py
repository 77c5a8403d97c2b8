"""A small evaluator of IAM policy documents, for the rules the emulator does not evaluate.

moto evaluates identity policies by action only for most services (the
resource of an SSM call is always ``*`` there) and evaluates bucket policies
without the request's principal or condition keys (docs/TESTING.md). The
tests read the live documents back from the emulator and judge a request
with this instead.

It follows AWS's documented logic for one account: an explicit ``Deny`` in any
document wins, then an ``Allow``, else the request is implicitly denied. It
knows ``Action``/``NotAction`` (case-insensitive wildcards), ``Resource``/
``NotResource``, ``Principal`` (``"*"`` or ``{"AWS": ...}``) and the condition
operators below. A key absent from the request makes a positive operator
false and a negated one (``...Not...``) true, as AWS documents; ``...IfExists``
is true when the key is absent. Any other operator or element raises, so a new
statement is never misjudged quietly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALLOW, DENY, IMPLICIT_DENY = "Allow", "Deny", "ImplicitDeny"
_KNOWN = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "Condition"}


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    principal: str = ""  # aws:PrincipalArn; also what a policy's Principal element is matched against
    context: dict[str, str] = field(default_factory=dict)  # other condition keys, e.g. aws:SecureTransport

    def value(self, key: str) -> str | None:
        if key.lower() == "aws:principalarn":
            return self.principal or None
        lowered = {k.lower(): v for k, v in self.context.items()}
        return lowered.get(key.lower())


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    """IAM's wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one character."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _string_like(pattern: str, value: str) -> bool:
    return _glob(pattern, value, case=True)


_OPERATORS = {
    "StringEquals": lambda want, got: want == got,
    "StringLike": _string_like,
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": _string_like,
    "Bool": lambda want, got: str(want).lower() == str(got).lower(),
}
_NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals",
            "ArnNotLike": "ArnLike"}


def _condition_holds(operator: str, key: str, wanted: Any, request: Request) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    got = request.value(key)
    if got is None:
        if base in _NEGATED:
            return True
        if base in _OPERATORS:
            return if_exists
        raise NotImplementedError(f"condition operator {operator}")
    if base in _NEGATED:
        test = _OPERATORS[_NEGATED[base]]
        return not any(test(str(w), got) for w in _as_list(wanted))
    if base in _OPERATORS:
        return any(_OPERATORS[base](str(w), got) for w in _as_list(wanted))
    raise NotImplementedError(f"condition operator {operator}")


def _principal_matches(element: Any, request: Request) -> bool:
    if element == "*":
        return True
    if isinstance(element, dict) and set(element) == {"AWS"}:
        return any(p == "*" or p == request.principal for p in _as_list(element["AWS"]))
    raise NotImplementedError(f"principal {element!r}")


def _element_matches(statement: dict[str, Any], element: str, value: str, *, case: bool) -> bool:
    """``Action``/``Resource`` match ``value``, or ``NotAction``/``NotResource`` do not."""
    if element in statement:
        return any(_glob(p, value, case=case) for p in _as_list(statement[element]))
    return not any(_glob(p, value, case=case) for p in _as_list(statement["Not" + element]))


def statement_applies(statement: dict[str, Any], request: Request) -> bool:
    unknown = set(statement) - _KNOWN
    if unknown:
        raise NotImplementedError(f"statement elements {sorted(unknown)}")
    if not _element_matches(statement, "Action", request.action, case=False):
        return False
    if not _element_matches(statement, "Resource", request.resource, case=True):
        return False
    if "Principal" in statement and not _principal_matches(statement["Principal"], request):
        return False
    for operator, pairs in (statement.get("Condition") or {}).items():
        for key, wanted in pairs.items():
            if not _condition_holds(operator, key, wanted, request):
                return False
    return True


def decide(documents: Iterable[dict[str, Any]], request: Request) -> str:
    """``Deny`` (explicit), ``Allow`` or ``ImplicitDeny`` for ``request`` under all ``documents`` together."""
    allowed = False
    for doc in documents:
        for statement in _as_list(doc["Statement"]):
            if statement_applies(statement, request):
                if statement["Effect"] == "Deny":
                    return DENY
                allowed = True
    return ALLOW if allowed else IMPLICIT_DENY
