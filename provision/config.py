"""Load and validate the stack config (``stack.yml``; reference: docs/CONFIG.md).

:func:`load` reads the YAML, checks every key and collects *every* problem,
each with its key path and the fix, then raises one :class:`ConfigError`; only
a config without problems becomes a frozen :class:`Config`. Nothing here talks
to AWS, so a bad config never causes an AWS call.

Other modules import :func:`bucket_name` for the bucket's full name
(``bucket.name`` plus the ``s3_bucket_suffix`` / ``S3_BUCKET_SUFFIX``
environment variable, as in the original project).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from provision.errors import ConfigError

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
ARCHITECTURES = ("x86_64", "arm64")
SUFFIX_ENV_VARS = ("s3_bucket_suffix", "S3_BUCKET_SUFFIX")
DEFAULT_CONFIG = "stack.yml"

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_INSTANCE_TYPE = re.compile(r"^([a-z][a-z0-9-]*)\.([a-z0-9]+)$")
_ARM_FAMILY = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SSM_PARAM = re.compile(r"^/[A-Za-z0-9_./-]+$")
# An IAM principal as the bucket policy's aws:PrincipalArn sees it: a user, a role (with its path), the root.
_PRINCIPAL_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(root|(user|role)/([\w+=,.@-]+/)*[\w+=,.@-]+)$")
_SESSION_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sts::(\d{12}):assumed-role/([\w+=,.@-]+)/")


@dataclass(frozen=True)
class StackConfig:
    name: str
    region: str


@dataclass(frozen=True)
class Prefixes:
    deploy: str = "deploy/"
    secrets: str = "secrets/"
    logs: str = "logs/"
    ledger: str = "ledger/"

    def as_dict(self) -> dict[str, str]:
        return {"deploy": self.deploy, "secrets": self.secrets, "logs": self.logs, "ledger": self.ledger}


@dataclass(frozen=True)
class BucketConfig:
    name: str
    prefixes: Prefixes
    #: IAM principal ARNs that may write deploy/ and secrets/ and read secrets/; empty: whoever runs `up`.
    operators: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceConfig:
    type: str
    architecture: str
    ami_ssm_parameter: str
    root_volume_gb: int
    static_ip: bool


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str
    subnet_cidr: str
    ssh_ingress: tuple[str, ...]


@dataclass(frozen=True)
class ScheduleConfig:
    timezone: str
    start: str
    stop: str
    weekdays: tuple[str, ...]
    agent_wait_seconds: int = 300
    command_timeout_seconds: int = 600


@dataclass(frozen=True)
class SpecialSession:
    date: str
    name: str


@dataclass(frozen=True)
class CalendarConfig:
    exchange: str
    extra_holidays: tuple[str, ...]
    special_sessions: tuple[SpecialSession, ...]


@dataclass(frozen=True)
class HostConfig:
    user: str
    workdir: str
    token_fresh_after: str


@dataclass(frozen=True)
class ArtifactsConfig:
    """Paths as written in the config; :meth:`Config.artifact_path` resolves them."""

    code_dir: str
    requirements: str
    keys_file: str
    token_file: str


@dataclass(frozen=True)
class CronJob:
    name: str
    time: str
    script: str


@dataclass(frozen=True)
class EodConfig:
    closure_script: str
    uploads: Mapping[str, str]


@dataclass(frozen=True)
class NotificationsConfig:
    email: str


@dataclass(frozen=True)
class Config:
    path: Path
    stack: StackConfig
    bucket: BucketConfig
    instance: InstanceConfig
    network: NetworkConfig
    schedule: ScheduleConfig
    calendar: CalendarConfig
    host: HostConfig
    artifacts: ArtifactsConfig
    cron_jobs: tuple[CronJob, ...]
    eod: EodConfig
    notifications: NotificationsConfig
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def artifact_path(self, value: str) -> Path:
        """An artifact path from the config, relative to the config file's directory."""
        p = Path(value)
        return p if p.is_absolute() else (self.path.parent / p)


# --------------------------------------------------------------------------- bucket name


def bucket_suffix(env: Mapping[str, str] | None = None) -> str:
    """The bucket suffix from ``s3_bucket_suffix`` (the original README) or ``S3_BUCKET_SUFFIX``
    (the original code). If both are set they must agree (checked by :func:`load`)."""
    env = os.environ if env is None else env
    for var in SUFFIX_ENV_VARS:
        if env.get(var):
            return env[var]
    return ""


def bucket_name(cfg: Config | Mapping[str, Any], env: Mapping[str, str] | None = None) -> str:
    """The bucket's full name: ``bucket.name`` + the suffix from the environment.

    Accepts a loaded :class:`Config` or the raw config mapping (as parsed from YAML).
    """
    base = cfg.bucket.name if isinstance(cfg, Config) else str(cfg["bucket"]["name"])
    return base + bucket_suffix(env)


def bucket_name_problems(name: str) -> list[str]:
    """What makes ``name`` an invalid S3 bucket name (general purpose buckets), if anything."""
    problems = []
    if not 3 <= len(name) <= 63:
        problems.append(f"is {len(name)} characters long; S3 allows 3 to 63")
    if not _BUCKET.match(name):
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


# --------------------------------------------------------------------------- time zones


def utc_offsets(zone: str, years: list[int]) -> set[dt.timedelta]:
    """Every UTC offset ``zone`` uses in ``years`` (sampled daily at 00:00 and 12:00 local)."""
    tz = ZoneInfo(zone)
    offsets: set[dt.timedelta] = set()
    for year in years:
        day = dt.date(year, 1, 1)
        while day.year == year:
            for hour in (0, 12):
                off = dt.datetime(day.year, day.month, day.day, hour, tzinfo=tz).utcoffset()
                if off is not None:
                    offsets.add(off)
            day += dt.timedelta(days=1)
    return offsets


def fixed_offset(zone: str, today: dt.date | None = None) -> dt.timedelta | None:
    """The zone's one UTC offset this year and next, or ``None`` if it changes (DST)."""
    year = (today or dt.date.today()).year
    offsets = utc_offsets(zone, [year, year + 1])
    return next(iter(offsets)) if len(offsets) == 1 else None


# --------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# --------------------------------------------------------------------------- validation


class _Checker:
    """Walks the raw config, collects every problem as ``key.path: message``."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def section(self, raw: Mapping[str, Any], key: str, allowed: dict[str, bool]) -> dict[str, Any]:
        """The mapping at ``raw[key]``; reports unknown and missing keys (``allowed``: key -> required)."""
        value = raw.get(key)
        if not isinstance(value, dict):
            if key in raw:
                self.add(key, f"must be a mapping with keys {', '.join(allowed)}")
            else:
                self.add(key, f"is missing; add a '{key}:' section (see docs/CONFIG.md)")
            return {}
        self.keys(key, value, allowed)
        return value

    def keys(self, path: str, value: Mapping[str, Any], allowed: dict[str, bool]) -> None:
        for k in value:
            if k not in allowed:
                hint = _closest(str(k), list(allowed))
                extra = f"; did you mean '{hint}'?" if hint else f"; known keys: {', '.join(allowed)}"
                self.add(f"{path}.{k}", f"unknown key{extra}")
        for k, required in allowed.items():
            if required and k not in value:
                self.add(f"{path}.{k}", "is missing (required; see docs/CONFIG.md)")

    def string(self, path: str, value: Any, *, allow_empty: bool = False) -> str | None:
        if value is None and allow_empty:
            return ""
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.add(
                path,
                f"must be a non-empty string, got {value!r}"
                if not allow_empty
                else f"must be a string, got {value!r}",
            )
            return None
        return value

    def hhmm(self, path: str, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 08:45 as the base-60 integer 525.
            h, m = divmod(value, 60)
            self.add(path, f'was read as the number {value}; quote the time: "{h:02d}:{m:02d}"')
            return None
        if not isinstance(value, str) or not _HHMM.match(value):
            self.add(path, f'{value!r} is not a time in 24-hour HH:MM (two digits each), e.g. "08:45"')
            return None
        return value

    def integer(self, path: str, value: Any, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.add(path, f"must be a whole number from {lo} to {hi}, got {value!r}")
            return None
        return value

    def boolean(self, path: str, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.add(path, f"must be true or false, got {value!r}")
            return None
        return value

    def date(self, path: str, value: Any) -> str | None:
        if isinstance(value, dt.date):
            return value.isoformat()
        if re.match(r"^\d{4}-\d{2}-\d{2}$", str(value)):
            try:
                return dt.date.fromisoformat(str(value)).isoformat()
            except ValueError:
                pass
        self.add(path, f'{value!r} is not a date in YYYY-MM-DD form, e.g. "2026-12-31"')
        return None

    def relpath(self, path: str, value: Any, *, allow_empty: bool = False) -> str | None:
        s = self.string(path, value, allow_empty=allow_empty)
        if s and (s.startswith("/") or ".." in Path(s).parts):
            self.add(path, f"{s!r} must be a path relative to the workspace, without '..'")
            return None
        return s

    def listing(self, path: str, value: Any) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, f"must be a list (use [] for none), got {value!r}")
            return []
        return value


def _closest(word: str, options: list[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return match[0] if match else None


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


@functools.lru_cache(maxsize=1)
def _known_regions() -> frozenset[str]:
    import boto3

    session = boto3.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


@functools.lru_cache(maxsize=1)
def _supported_exchanges() -> frozenset[str]:
    import holidays

    supported = holidays.list_supported_financial()
    return frozenset(str(k) for k in supported)


def validate(
    raw: Any, path: Path, env: Mapping[str, str] | None = None, today: dt.date | None = None
) -> Config:
    """Validate a parsed config; raise :class:`ConfigError` with every problem, else return it frozen."""
    env = os.environ if env is None else env
    c = _Checker()
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["(top level): must be a mapping of sections (see docs/CONFIG.md)"])
    sections = (
        "stack",
        "bucket",
        "instance",
        "network",
        "schedule",
        "calendar",
        "host",
        "artifacts",
        "cron_jobs",
        "eod",
        "notifications",
    )
    for k in raw:
        if k not in sections:
            hint = _closest(str(k), list(sections))
            c.add(
                str(k),
                f"unknown section; did you mean '{hint}'?"
                if hint
                else f"unknown section; known sections: {', '.join(sections)}",
            )

    # stack
    s = c.section(raw, "stack", {"name": True, "region": True})
    name = c.string("stack.name", s.get("name")) if "name" in s else None
    if name and not _STACK_NAME.match(name):
        c.add(
            "stack.name",
            f"{name!r} must be 2-30 lowercase letters, digits or '-', starting with a letter"
            " (it prefixes every resource name)",
        )
        name = None
    if name and name.startswith(("aws", "amazon", "amzn")):
        c.add("stack.name", f"{name!r} starts with a prefix AWS reserves for its own SSM documents "
                            "(<stack>-sync and <stack>-eod are the stack's); choose another name")
        name = None
    region = c.string("stack.region", s.get("region")) if "region" in s else None
    if region and (not _REGION.match(region) or region not in _known_regions()):
        c.add("stack.region", f"{region!r} is not an AWS region name, e.g. ap-south-1 (Mumbai)")
        region = None

    # bucket
    b = c.section(raw, "bucket", {"name": True, "prefixes": False, "operators": False})
    bname = c.string("bucket.name", b.get("name")) if "name" in b else None
    suffixes = {v: env[v] for v in SUFFIX_ENV_VARS if env.get(v)}
    if len(set(suffixes.values())) > 1:
        c.add(
            "bucket.name",
            "the environment variables s3_bucket_suffix and S3_BUCKET_SUFFIX disagree "
            f"({suffixes['s3_bucket_suffix']!r} vs {suffixes['S3_BUCKET_SUFFIX']!r}); unset one of them",
        )
    if bname:
        full = bname + bucket_suffix(env)
        shown = (
            f"{full!r} (bucket.name {bname!r} + suffix {bucket_suffix(env)!r} from the environment)"
            if bucket_suffix(env)
            else repr(full)
        )
        for problem in bucket_name_problems(full):
            c.add("bucket.name", f"{shown} {problem}")
    prefixes = Prefixes()
    raw_prefixes = b.get("prefixes", {})
    if raw_prefixes is None:
        raw_prefixes = {}
    if not isinstance(raw_prefixes, dict):
        c.add(
            "bucket.prefixes", "must be a mapping of deploy, secrets, logs, ledger to prefixes like 'deploy/'"
        )
    else:
        c.keys(
            "bucket.prefixes",
            raw_prefixes,
            {"deploy": False, "secrets": False, "logs": False, "ledger": False},
        )
        values = prefixes.as_dict()
        for k in values:
            if k in raw_prefixes:
                v = c.string(f"bucket.prefixes.{k}", raw_prefixes[k])
                if v is not None and (not re.match(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$", v)):
                    c.add(
                        f"bucket.prefixes.{k}",
                        f"{v!r} must be a relative key prefix ending in '/', e.g. '{k}/'",
                    )
                elif v is not None:
                    values[k] = v
        vals = list(values.values())
        for pos, a in enumerate(vals):
            for other in vals[pos + 1 :]:
                if a.startswith(other) or other.startswith(a):
                    c.add(
                        "bucket.prefixes",
                        f"{a!r} and {other!r} overlap; each prefix must be separate "
                        "(the instance role's access is granted per prefix)",
                    )
        prefixes = Prefixes(**values)
    operators = _operators(c, b.get("operators"))

    # instance
    inst = c.section(
        raw,
        "instance",
        {
            "type": True,
            "architecture": True,
            "ami_ssm_parameter": False,
            "root_volume_gb": False,
            "static_ip": False,
        },
    )
    arch = c.string("instance.architecture", inst.get("architecture")) if "architecture" in inst else None
    if arch and arch not in ARCHITECTURES:
        c.add("instance.architecture", f"{arch!r} must be one of {', '.join(ARCHITECTURES)}")
        arch = None
    itype = c.string("instance.type", inst.get("type")) if "type" in inst else None
    if itype:
        m = _INSTANCE_TYPE.match(itype)
        if not m:
            c.add("instance.type", f"{itype!r} is not an EC2 instance type, e.g. t3.small or t4g.small")
        elif arch:
            is_arm = bool(_ARM_FAMILY.match(m.group(1)))
            if is_arm and arch != "arm64":
                c.add(
                    "instance.type",
                    f"{itype!r} is a Graviton (arm64) type but instance.architecture is "
                    f"{arch}; use an x86_64 type such as t3.small, or set architecture: arm64",
                )
            if not is_arm and arch == "arm64":
                c.add(
                    "instance.type",
                    f"{itype!r} is not an arm64 type; use a Graviton type such as "
                    "t4g.small, or set architecture: x86_64",
                )
    default_param = f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch or 'x86_64'}"
    ami_param = c.string("instance.ami_ssm_parameter", inst.get("ami_ssm_parameter", default_param))
    if ami_param:
        if not _SSM_PARAM.match(ami_param):
            c.add(
                "instance.ami_ssm_parameter", f"{ami_param!r} must be an SSM parameter name starting with '/'"
            )
        elif arch:
            other = "arm64" if arch == "x86_64" else "x86_64"
            if other in ami_param:
                c.add(
                    "instance.ami_ssm_parameter",
                    f"{ami_param!r} names an {other} image but "
                    f"instance.architecture is {arch}; use the {arch} parameter, e.g. {default_param}",
                )
    volume = c.integer("instance.root_volume_gb", inst.get("root_volume_gb", 16), 8, 16384)
    static_ip = c.boolean("instance.static_ip", inst.get("static_ip", True))

    # network
    n = c.section(raw, "network", {"vpc_cidr": True, "subnet_cidr": True, "ssh_ingress": False})
    vpc = _cidr(c, "network.vpc_cidr", n.get("vpc_cidr"), 16, 28) if "vpc_cidr" in n else None
    subnet = _cidr(c, "network.subnet_cidr", n.get("subnet_cidr"), 16, 28) if "subnet_cidr" in n else None
    if vpc and subnet and not subnet.subnet_of(vpc):
        c.add(
            "network.subnet_cidr",
            f"{subnet} is not inside network.vpc_cidr {vpc}; pick a subnet of it, "
            f"e.g. {next(vpc.subnets(new_prefix=min(vpc.prefixlen + 8, 28)))}",
        )
    ingress: list[str] = []
    for idx, item in enumerate(c.listing("network.ssh_ingress", n.get("ssh_ingress"))):
        p = f"network.ssh_ingress[{idx}]"
        net = _cidr(c, p, item, 0, 32)
        if net is None:
            continue
        if net.prefixlen == 0:
            c.add(
                p,
                "0.0.0.0/0 would open SSH to the whole internet; list your own address as a /32, "
                "e.g. 203.0.113.7/32",
            )
            continue
        if str(net) in ingress:
            c.add(p, f"{net} is listed twice")
            continue
        ingress.append(str(net))

    # schedule
    sc = c.section(
        raw,
        "schedule",
        {
            "timezone": True,
            "start": True,
            "stop": True,
            "weekdays": False,
            "agent_wait_seconds": False,
            "command_timeout_seconds": False,
        },
    )
    tz = c.string("schedule.timezone", sc.get("timezone")) if "timezone" in sc else None
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            c.add("schedule.timezone", f"{tz!r} is not an IANA time zone name, e.g. Asia/Kolkata")
            tz = None
        else:
            if fixed_offset(tz, today) is None:
                c.add(
                    "schedule.timezone",
                    f"{tz!r} changes its UTC offset during the year (daylight saving "
                    "time); EventBridge cron rules are in UTC and would drift by an hour, so such zones are "
                    "refused. Use the exchange's fixed-offset zone, e.g. Asia/Kolkata",
                )
                tz = None
    start = c.hhmm("schedule.start", sc.get("start")) if "start" in sc else None
    stop = c.hhmm("schedule.stop", sc.get("stop")) if "stop" in sc else None
    if start and stop and _minutes(start) >= _minutes(stop):
        c.add(
            "schedule.stop",
            f"{stop} is not after schedule.start {start}; both are exchange-local times on the same day",
        )
    weekdays: list[str] = []
    for idx, d in enumerate(c.listing("schedule.weekdays", sc.get("weekdays", list(WEEKDAYS[:5])))):
        if not isinstance(d, str) or d not in WEEKDAYS:
            c.add(f"schedule.weekdays[{idx}]", f"{d!r} is not one of {', '.join(WEEKDAYS)}")
        elif d in weekdays:
            c.add(f"schedule.weekdays[{idx}]", f"{d} is listed twice")
        else:
            weekdays.append(d)
    if "weekdays" in sc and isinstance(sc.get("weekdays"), list) and not sc["weekdays"]:
        c.add("schedule.weekdays", "is empty; list the trading weekdays, e.g. [MON, TUE, WED, THU, FRI]")
    agent_wait = c.integer("schedule.agent_wait_seconds", sc.get("agent_wait_seconds", 300), 10, 840)
    cmd_timeout = c.integer(
        "schedule.command_timeout_seconds", sc.get("command_timeout_seconds", 600), 30, 880
    )

    # calendar
    ca = c.section(raw, "calendar", {"exchange": True, "extra_holidays": False, "special_sessions": False})
    exchange = c.string("calendar.exchange", ca.get("exchange")) if "exchange" in ca else None
    if exchange and exchange not in _supported_exchanges():
        c.add(
            "calendar.exchange",
            f"{exchange!r} is not a market code the holidays package knows, e.g. XNSE (NSE)",
        )
    extra: list[str] = []
    for idx, d in enumerate(c.listing("calendar.extra_holidays", ca.get("extra_holidays"))):
        v = c.date(f"calendar.extra_holidays[{idx}]", d)
        if v:
            extra.append(v)
    sessions: list[SpecialSession] = []
    for idx, item in enumerate(c.listing("calendar.special_sessions", ca.get("special_sessions"))):
        p = f"calendar.special_sessions[{idx}]"
        if not isinstance(item, dict):
            c.add(p, 'must be a mapping like {date: "2026-11-08", name: "Muhurat trading"}')
            continue
        c.keys(p, item, {"date": True, "name": True})
        sd = c.date(f"{p}.date", item.get("date")) if "date" in item else None
        sn = c.string(f"{p}.name", item.get("name")) if "name" in item else None
        if sd and sn:
            sessions.append(SpecialSession(sd, sn))

    # host
    h = c.section(raw, "host", {"user": True, "workdir": True, "token_fresh_after": False})
    user = c.string("host.user", h.get("user")) if "user" in h else None
    if user and not _USER.match(user):
        c.add("host.user", f"{user!r} is not a Linux user name, e.g. ec2-user")
    workdir = c.string("host.workdir", h.get("workdir")) if "workdir" in h else None
    if workdir and (not workdir.startswith("/") or ".." in Path(workdir).parts or workdir.rstrip("/") == ""):
        c.add(
            "host.workdir",
            f"{workdir!r} must be an absolute path without '..', e.g. /home/ec2-user/projects/SimpleTrader",
        )
    fresh = c.hhmm("host.token_fresh_after", h.get("token_fresh_after", "06:00"))

    # artifacts
    arts = c.section(
        raw, "artifacts", {"code_dir": True, "requirements": True, "keys_file": True, "token_file": True}
    )
    art = {
        k: c.string(f"artifacts.{k}", arts.get(k)) if k in arts else None
        for k in ("code_dir", "requirements", "keys_file", "token_file")
    }

    # cron jobs
    jobs: list[CronJob] = []
    names: set[str] = set()
    for idx, job in enumerate(c.listing("cron_jobs", raw.get("cron_jobs"))):
        p = f"cron_jobs[{idx}]"
        if not isinstance(job, dict):
            c.add(p, 'must be a mapping like {name: trading, time: "09:14", script: src/setup/setup.py}')
            continue
        c.keys(p, job, {"name": True, "time": True, "script": True})
        jn = c.string(f"{p}.name", job.get("name")) if "name" in job else None
        if jn and not _SLUG.match(jn):
            c.add(f"{p}.name", f"{jn!r} must be lowercase letters, digits and '-' (it names the cron job)")
            jn = None
        if jn and jn in names:
            c.add(f"{p}.name", f"{jn!r} is used by another job; names must be unique")
        jt = c.hhmm(f"{p}.time", job.get("time")) if "time" in job else None
        if jt and start and stop and not _minutes(start) < _minutes(jt) < _minutes(stop):
            c.add(
                f"{p}.time",
                f"{jt} is outside schedule.start {start} .. schedule.stop {stop}; the host is stopped then",
            )
        js = c.relpath(f"{p}.script", job.get("script")) if "script" in job else None
        if jn and jt and js:
            names.add(jn)
            jobs.append(CronJob(jn, jt, js))

    # eod
    eod_raw = raw.get("eod", {}) or {}
    if not isinstance(eod_raw, dict):
        c.add("eod", "must be a mapping with closure_script and uploads")
        eod_raw = {}
    c.keys("eod", eod_raw, {"closure_script": False, "uploads": False})
    closure = c.relpath("eod.closure_script", eod_raw.get("closure_script", ""), allow_empty=True)
    uploads_raw = eod_raw.get("uploads", {"trade_logs": "trade_logs", "ledger": "ledger"})
    uploads: dict[str, str] = {}
    if not isinstance(uploads_raw, dict):
        c.add("eod.uploads", "must be a mapping with trade_logs and ledger")
    else:
        c.keys("eod.uploads", uploads_raw, {"trade_logs": True, "ledger": True})
        for k in ("trade_logs", "ledger"):
            if k in uploads_raw:
                v = c.relpath(f"eod.uploads.{k}", uploads_raw[k])
                if v:
                    uploads[k] = v

    # notifications
    no = raw.get("notifications", {}) or {}
    if not isinstance(no, dict):
        c.add("notifications", "must be a mapping with email")
        no = {}
    c.keys("notifications", no, {"email": False})
    email = c.string("notifications.email", no.get("email", ""), allow_empty=True)
    if email and not _EMAIL.match(email):
        c.add("notifications.email", f'{email!r} is not an e-mail address; use "" for no e-mail')

    if c.problems:
        raise ConfigError(str(path), c.problems)

    def req(value: Any) -> Any:
        assert value is not None  # every None above came with a problem
        return value

    return Config(
        path=path,
        stack=StackConfig(req(name), req(region)),
        bucket=BucketConfig(req(bname), prefixes, operators),
        instance=InstanceConfig(req(itype), req(arch), req(ami_param), req(volume), req(static_ip)),
        network=NetworkConfig(str(req(vpc)), str(req(subnet)), tuple(ingress)),
        schedule=ScheduleConfig(
            req(tz), req(start), req(stop), tuple(weekdays), req(agent_wait), req(cmd_timeout)
        ),
        calendar=CalendarConfig(req(exchange), tuple(extra), tuple(sessions)),
        host=HostConfig(req(user), req(workdir), req(fresh)),
        artifacts=ArtifactsConfig(**{k: req(v) for k, v in art.items()}),
        cron_jobs=tuple(jobs),
        eod=EodConfig(closure or "", dict(uploads)),
        notifications=NotificationsConfig(email or ""),
        raw=raw,
    )


def _operators(c: _Checker, value: Any) -> tuple[str, ...]:
    """``bucket.operators``: IAM user or role ARNs (no wildcards, no role sessions), each once."""
    found: list[str] = []
    for idx, item in enumerate(c.listing("bucket.operators", value)):
        p = f"bucket.operators[{idx}]"
        arn = c.string(p, item)
        if arn is None:
            continue
        session = _SESSION_ARN.match(arn)
        if session:
            c.add(p, f"{arn!r} is a role session; list the role itself, e.g. arn:aws:iam::{session.group(2)}:role/"
                     f"{session.group(3)} (with its path: aws iam get-role --role-name {session.group(3)})")
        elif not _PRINCIPAL_ARN.match(arn):
            c.add(p, f"{arn!r} is not an IAM user or role ARN, e.g. arn:aws:iam::123456789012:user/alice "
                     "(no wildcards)")
        elif arn in found:
            c.add(p, f"{arn} is listed twice")
        else:
            found.append(arn)
    return tuple(found)


def _cidr(c: _Checker, path: str, value: Any, lo: int, hi: int) -> ipaddress.IPv4Network | None:
    if not isinstance(value, str):
        c.add(path, f'must be an IPv4 CIDR string like "10.42.0.0/16", got {value!r}')
        return None
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        c.add(path, f'{value!r} is not an IPv4 CIDR, e.g. "10.42.0.0/16" or "203.0.113.7/32"')
        return None
    if not isinstance(net, ipaddress.IPv4Network):
        c.add(path, f"{value!r} is IPv6; only IPv4 CIDRs are supported here")
        return None
    if "/" not in value:
        c.add(path, f'{value!r} has no prefix length; write it as "{value}/32"')
        return None
    if str(net) != value:
        c.add(path, f'{value!r} has host bits set; did you mean "{net}"?')
        return None
    if not lo <= net.prefixlen <= hi:
        c.add(path, f"{value!r}: the prefix length must be /{lo} to /{hi}")
        return None
    return net


def load(
    path: str | Path = DEFAULT_CONFIG, env: Mapping[str, str] | None = None, today: dt.date | None = None
) -> Config:
    """Read and validate the config file; raise :class:`ConfigError` listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), [f"(file): not found; pass --config PATH or create {p}"]) from None
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot be read: {exc.strerror}"]) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(p), [f"(yaml): {where}{problem}"]) from None
    return validate(raw, p.resolve(), env=env, today=today)
