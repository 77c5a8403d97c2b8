"""Settings of the start and stop functions, read once per invocation from the environment.

The variables are set by ``provision`` (docs/CONTRACTS.md, "Lambda environment").
None of them is a secret. A missing or invalid variable is a ``SettingsError``
that names it, raised before any AWS call.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

HERE = Path(__file__).resolve().parent

_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
# An SSM document name the stack owns: SSM's name rule, and none of AWS's own (e.g. AWS-RunShellScript).
_DOCUMENT = re.compile(r"^(?!(aws|amazon|amzn))[a-zA-Z0-9_.-]{3,128}$", re.IGNORECASE)

#: host.token_check's modes. provision checks stack.yml against this very tuple (provision/rules.py);
#: the host's job guard and trader_cron's argument spec are held to it by tests/ansible/test_config_chain.py.
TOKEN_CHECKS = ("refuse", "warn", "off")


class SettingsError(ValueError):
    """The function's environment is incomplete or invalid."""


@dataclass(frozen=True)
class Settings:
    instance_id: str
    bucket: str
    topic_arn: str
    timezone: str
    sync_document: str
    eod_document: str
    token_key: str
    manifest_key: str
    token_fresh_after: tuple[int, int]
    # host.token_check: refuse / warn (the start function warns of a stale token) or off (no check).
    token_check: str = "refuse"  # noqa: S105 - a mode, not a secret
    agent_wait_seconds: int = 300
    command_timeout_seconds: int = 600
    # Optional knobs (not in the contract table; defaults fit AWS).
    waiter_delay_seconds: float = 5.0
    waiter_max_attempts: int = 60
    calendar_file: Path = HERE / "calendar.json"
    stack_name: str = "simpletrader"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def token_fresh_after_text(self) -> str:
        return f"{self.token_fresh_after[0]:02d}:{self.token_fresh_after[1]:02d}"


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is missing or empty; provision sets it")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name}={raw!r} is not a whole number of seconds") from None
    if value < minimum:
        raise SettingsError(f"environment variable {name}={value} must be at least {minimum}")
    return value


def _document(env: Mapping[str, str], name: str) -> str:
    value = _required(env, name)
    if not _DOCUMENT.match(value):
        raise SettingsError(f"environment variable {name}={value!r} must name the stack's own SSM document "
                            "(e.g. simpletrader-sync), not one of AWS's")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name}={raw!r} is not a number") from None
    if value < 0:
        raise SettingsError(f"environment variable {name}={value} must not be negative")
    return value


def stack_of(env: Mapping[str, str], topic_arn: str) -> str:
    """``ST_STACK_NAME``, else the topic's name without ``-events``."""
    name = topic_arn.rsplit(":", 1)[-1]
    from_topic = name[: -len("-events")] if name.endswith("-events") and len(name) > len("-events") else name
    return env.get("ST_STACK_NAME", "").strip() or from_topic


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; ``env`` defaults to ``os.environ``."""
    env = os.environ if env is None else env

    instance_id = _required(env, "ST_INSTANCE_ID")
    if not _INSTANCE_ID.match(instance_id):
        raise SettingsError(f"environment variable ST_INSTANCE_ID={instance_id!r} is not an EC2 instance id")

    bucket = _required(env, "ST_BUCKET")

    topic_arn = _required(env, "ST_TOPIC_ARN")
    if not topic_arn.startswith("arn:") or topic_arn.count(":") < 5:
        raise SettingsError(f"environment variable ST_TOPIC_ARN={topic_arn!r} is not an SNS topic ARN")

    timezone = _required(env, "ST_TIMEZONE")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        if not available_timezones():
            raise SettingsError(
                f"environment variable ST_TIMEZONE={timezone!r} cannot be resolved: this runtime has no "
                "time zone database (install tzdata in the package)") from None
        raise SettingsError(
            f"environment variable ST_TIMEZONE={timezone!r} is not an IANA time zone") from None

    fresh = _required(env, "ST_TOKEN_FRESH_AFTER")
    match = _HHMM.match(fresh)
    if match is None:
        raise SettingsError(f"environment variable ST_TOKEN_FRESH_AFTER={fresh!r} is not a time HH:MM")

    token_check = env.get("ST_TOKEN_CHECK", "").strip() or "refuse"
    if token_check not in TOKEN_CHECKS:
        raise SettingsError(f"environment variable ST_TOKEN_CHECK={token_check!r} must be one of "
                            f"{', '.join(TOKEN_CHECKS)}")

    calendar_raw = env.get("ST_CALENDAR_FILE", "").strip()
    stack = stack_of(env, topic_arn)

    return Settings(
        instance_id=instance_id,
        bucket=bucket,
        topic_arn=topic_arn,
        timezone=timezone,
        sync_document=_document(env, "ST_SYNC_DOCUMENT"),
        eod_document=_document(env, "ST_EOD_DOCUMENT"),
        token_key=_required(env, "ST_TOKEN_KEY"),
        manifest_key=_required(env, "ST_MANIFEST_KEY"),
        token_fresh_after=(int(match.group(1)), int(match.group(2))),
        token_check=token_check,
        agent_wait_seconds=_int(env, "ST_AGENT_WAIT_SECONDS", 300),
        command_timeout_seconds=_int(env, "ST_COMMAND_TIMEOUT_SECONDS", 600),
        waiter_delay_seconds=_float(env, "ST_WAITER_DELAY_SECONDS", 5.0),
        waiter_max_attempts=_int(env, "ST_WAITER_MAX_ATTEMPTS", 60),
        calendar_file=Path(calendar_raw) if calendar_raw else HERE / "calendar.json",
        stack_name=stack,
    )
