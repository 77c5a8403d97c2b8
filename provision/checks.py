"""Checks of single values of the stack config: AWS names and ARNs, zones, markets, paths, prefixes.

Each is a check of :mod:`provision.schema` (``(value, context) -> value``,
or :class:`Problem` with the message the operator reads after the key's
path); :mod:`provision.config` declares which key uses which. Nothing here
talks to AWS: regions and markets come from small registries read once.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provision.cron import fixed_offset
from provision.rules import WEEKDAYS
from provision.schema import Context, Problem, hhmm, network, string

#: An ``ssh_ingress`` entry standing for the operator's current public IPv4 address as a /32.
AUTO_INGRESS = "auto"
SUFFIX_ENV_VARS = ("s3_bucket_suffix", "S3_BUCKET_SUFFIX")


@functools.lru_cache(maxsize=1)
def _known_regions() -> frozenset[str]:
    """Every region botocore knows, from its small partitions.json (endpoints.json takes 0.1 s to read:
    this runs at the start of every site.yml)."""
    import botocore.loaders

    data = botocore.loaders.create_loader().load_data("partitions")
    return frozenset(region for part in data["partitions"] for region in part["regions"])


def aws_region(value: str, ctx: Context) -> str:
    if not re.match(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$", value) or value not in _known_regions():
        raise Problem(f"{value!r} is not an AWS region name, e.g. ap-south-1 (Mumbai)")
    return value


def full_bucket_name(value: str, ctx: Context) -> str:
    suffixes = {v: ctx.env[v] for v in SUFFIX_ENV_VARS if ctx.env.get(v)}
    if len(set(suffixes.values())) > 1:
        raise Problem("the environment variables s3_bucket_suffix and S3_BUCKET_SUFFIX disagree "
                      f"({suffixes['s3_bucket_suffix']!r} vs {suffixes['S3_BUCKET_SUFFIX']!r}); unset one of them")
    suffix = bucket_suffix(ctx.env)
    full = value + suffix
    shown = f"{full!r} (bucket.name {value!r} + suffix {suffix!r} from the environment)" if suffix else repr(full)
    found = bucket_name_problems(full)
    if found:
        raise Problem("", [("", f"{shown} {problem}") for problem in found])
    return value


def not_reserved(value: str, ctx: Context) -> str:
    if value.startswith(("aws", "amazon", "amzn")):
        raise Problem(f"{value!r} starts with a prefix AWS reserves for its own SSM documents (<stack>-sync and "
                      "<stack>-eod are the stack's); choose another name")
    return value


# An IAM principal as the bucket policy's aws:PrincipalArn sees it: a user, a role (with its path), the root.
_PRINCIPAL_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(root|(user|role)/([\w+=,.@-]+/)*[\w+=,.@-]+)$")
_SESSION_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sts::(\d{12}):assumed-role/([\w+=,.@-]+)/")


def principal_arn(value: Any, ctx: Context) -> str:
    """An IAM user or role ARN (no wildcards, not a role session)."""
    arn = string(value, ctx)
    session = _SESSION_ARN.match(arn)
    if session:
        raise Problem(f"{arn!r} is a role session; list the role itself, e.g. arn:aws:iam::{session.group(2)}:role/"
                      f"{session.group(3)} (with its path: aws iam get-role --role-name {session.group(3)})")
    if not _PRINCIPAL_ARN.match(arn):
        raise Problem(f"{arn!r} is not an IAM user or role ARN, e.g. arn:aws:iam::123456789012:user/alice "
                      "(no wildcards)")
    return arn


def prefix(value: Any, ctx: Context) -> str:
    value = string(value, ctx)
    if not re.match(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$", value):
        raise Problem(f"{value!r} must be a relative key prefix ending in '/', e.g. 'logs/'")
    return value


def iana_zone(value: str, ctx: Context) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(f"{value!r} is not an IANA time zone name, e.g. Asia/Kolkata") from None
    if fixed_offset(value, ctx.today) is None:
        raise Problem(f"{value!r} changes its UTC offset during the year (daylight saving time); EventBridge cron "
                      "rules are in UTC and would drift by an hour, so such zones are refused. Use the exchange's "
                      "fixed-offset zone, e.g. Asia/Kolkata")
    return value


def weekday(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or value not in WEEKDAYS:
        raise Problem(f"{value!r} is not one of {', '.join(WEEKDAYS)}")
    return value


@functools.lru_cache(maxsize=1)
def _supported_exchanges() -> frozenset[str]:
    # The registry's codes (with aliases such as NSE): what holidays.list_supported_financial() lists,
    # without importing every market's module.
    from holidays.registry import EntityLoader

    return frozenset(str(k) for k in EntityLoader.get_financial_codes(True))


def exchange(value: str, ctx: Context) -> str:
    if value not in _supported_exchanges():
        raise Problem(f"{value!r} is not a market code the holidays package knows, e.g. XNSE (NSE)")
    return value


def ingress_item(value: Any, ctx: Context) -> str:
    if value == AUTO_INGRESS:
        return AUTO_INGRESS
    net = network(value, 0, 32)
    if net.prefixlen == 0:
        raise Problem("0.0.0.0/0 would open SSH to the whole internet; list your own address as a /32, "
                      "e.g. 203.0.113.7/32, or use auto (your current address, looked up at plan/up time)")
    return str(net)


def ingress_list(value: Any, ctx: Context) -> Any:
    return [AUTO_INGRESS] if value == AUTO_INGRESS else value


def absolute_path(value: str, ctx: Context) -> str:
    if not value.startswith("/") or ".." in Path(value).parts or value.rstrip("/") == "":
        raise Problem(f"{value!r} must be an absolute path without '..', e.g. /home/ec2-user/projects/SimpleTrader")
    return value


def unquoted_off(value: Any, ctx: Context) -> Any:
    """YAML 1.1 reads an unquoted ``off`` (and ``no``, ``false``) as false: for ``token_check`` that is ``off``."""
    return "off" if value is False else value


def policy_arn(value: Any, ctx: Context) -> str:
    arn = string(value, ctx)
    if ":" not in arn:
        raise Problem(f"{arn!r} is a policy name; give its full ARN: arn:aws:iam::aws:policy/{arn} (AWS's) or "
                      f"arn:aws:iam::<account-id>:policy/{arn} (the account's own, with its path)")
    if not re.match(r"^arn:aws(-[a-z]+)*:iam::(aws|\d{12}):policy/([\w+=,.@-]+/)*[\w+=,.@-]+$", arn):
        raise Problem(f"{arn!r} is not an IAM policy ARN, e.g. arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy "
                      "or arn:aws:iam::123456789012:policy/trader-extra")
    return arn


def secret_ref(value: Any, ctx: Context) -> str:
    ref = string(value, ctx)
    if ref.startswith("arn:"):
        if not re.match(r"^arn:aws(-[a-z]+)*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$", ref):
            raise Problem(f"{ref!r} is not a Secrets Manager secret ARN, e.g. "
                          "arn:aws:secretsmanager:ap-south-1:123456789012:secret:kite/keys-AbCdEf")
    elif not re.match(r"^[\w/+=.@-]{1,512}$", ref):
        raise Problem(f"{ref!r} is not a secret name (letters, digits and /_+=.@-), e.g. kite/keys")
    return ref


def job_times(value: Any, ctx: Context) -> dict[str, str]:
    """``{job name: "HH:MM"}`` for a special session: jobs of ``cron_jobs`` at the session's own times."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Problem(f'must be a mapping of cron job names to times, e.g. {{trading: "18:14"}}, got {value!r}')
    items: list[tuple[str, str]] = []
    for name, at in value.items():
        try:
            hhmm(at, ctx)
        except Problem as exc:
            items.append((f".{name}", str(exc)))
    if items:
        raise Problem("", items)
    return {str(k): str(v) for k, v in value.items()}


def minutes(hhmm_text: str) -> int:
    """Minutes since midnight of an ``HH:MM`` time (one the hhmm check passed)."""
    h, m = hhmm_text.split(":")
    return int(h) * 60 + int(m)


def bucket_suffix(env: Mapping[str, str] | None = None) -> str:
    """The bucket suffix from ``s3_bucket_suffix`` (the original README) or ``S3_BUCKET_SUFFIX``
    (the original code). If both are set they must agree (checked by :func:`load`)."""
    env = os.environ if env is None else env
    for var in SUFFIX_ENV_VARS:
        if env.get(var):
            return env[var]
    return ""


def bucket_name_problems(name: str) -> list[str]:
    """What makes ``name`` an invalid S3 bucket name (general purpose buckets), if anything."""
    problems = []
    if not 3 <= len(name) <= 63:
        problems.append(f"is {len(name)} characters long; S3 allows 3 to 63")
    if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", name):
        problems.append(
            "must use only lowercase letters, digits, '.' and '-', and start and end with a letter or digit"
        )
    if ".." in name:
        problems.append("must not contain '..'")
    if re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        problems.append("must not look like an IP address")
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3")
    ):
        problems.append("uses a prefix or suffix S3 reserves")
    return problems
