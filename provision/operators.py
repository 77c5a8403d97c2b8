"""Who operates the stack: the principals the bucket policy lets write ``deploy/`` and ``secrets/``
and read ``secrets/`` (besides the instance role, which reads them).

``bucket.operators`` names them (IAM user or role ARNs). Left empty, the
operator is whoever runs the command, found with ``sts get-caller-identity``.
A role session (``arn:aws:sts::<account>:assumed-role/<role>/<session>``) is
turned into its role's ARN, path included, because that is what the bucket
policy's ``aws:PrincipalArn`` compares for a session (``iam:GetRole`` gives the
path; SSO roles live under ``/aws-reserved/...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision.aws import error_code
from provision.engine import Context
from provision.errors import ProvisionError

_SESSION = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+$")


@dataclass(frozen=True)
class Operators:
    arns: tuple[str, ...]
    from_config: bool

    def describe(self) -> str:
        who = ", ".join(self.arns)
        if self.from_config:
            return f"operators (bucket.operators): {who}"
        return f"operators: {who} (whoever runs this command; name them in bucket.operators)"


def principal_arn(caller_arn: str, ctx: Context) -> str:
    """The ARN ``aws:PrincipalArn`` carries for requests made by ``caller_arn``."""
    session = _SESSION.match(caller_arn)
    if session is None:
        return caller_arn  # an IAM user, the root, a federated user: the same ARN
    role = session.group(3)
    try:
        return str(ctx.clients.iam.get_role(RoleName=role)["Role"]["Arn"])
    except Exception as exc:
        if error_code(exc) not in ("AccessDenied", "AccessDeniedException", "NoSuchEntity"):
            raise
        raise ProvisionError(
            f"you are working as role {role}, but its ARN could not be read (iam:GetRole: {error_code(exc)}); "
            "name the operators in bucket.operators, e.g. the role's ARN from `aws iam get-role "
            f"--role-name {role}`") from None


def operators(ctx: Context) -> Operators:
    """The stack's operators (read once per command)."""
    if "operators" not in ctx.cache:
        configured = ctx.cfg.bucket.operators
        if configured:
            ctx.cache["operators"] = Operators(configured, True)
        else:
            ctx.cache["operators"] = Operators((principal_arn(ctx.clients.caller_arn, ctx),), False)
    found: Operators = ctx.cache["operators"]
    return found
