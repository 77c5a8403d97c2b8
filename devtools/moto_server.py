"""moto_server, with one correction to how it evaluates policy conditions.

moto 5.2 ignores condition operators it does not implement (everything but
StringEquals), so a statement such as the bucket's TLS-only guard

    {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}

applies unconditionally there and denies every request, which AWS never does.
AWS's rule is that a condition on a key absent from the request context does
not match (unless the operator ends in IfExists). moto passes no context keys
for S3 requests, so with this correction such a Deny never matches. This is
the one place the emulator is corrected; product code never sees it.

Run as ``python -m devtools.moto_server -H HOST -p PORT`` (moto_server's options).
"""

from __future__ import annotations

from typing import Any

from moto.iam import access_control

_original = access_control.IAMPolicyStatement.is_action_permitted


def is_action_permitted(self: Any, action: str, resource: str = "*", principal: str | None = None,
                        incoming_condition_values: dict[str, str] | None = None) -> Any:
    """A statement whose condition names a key absent from the request does not apply."""
    for operator, pairs in (self._statement.get("Condition") or {}).items():
        for key in pairs:
            if key not in (incoming_condition_values or {}) and not operator.endswith("IfExists"):
                return access_control.PermissionResult.NEUTRAL
    return _original(self, action, resource, principal, incoming_condition_values)


access_control.IAMPolicyStatement.is_action_permitted = is_action_permitted  # type: ignore[method-assign]

if __name__ == "__main__":
    from moto.server import main

    main()
