"""The stack config (``stack.yml``): every key declared once, with its type, default, checks and messages.

Reference: docs/CONFIG.md (a test keeps its tables and this schema in
agreement). :func:`load` reads the YAML, checks every key with
:mod:`provision.schema` and collects *every* problem, each with its key path
and the fix, then raises one :class:`ConfigError`; only a config without
problems becomes a frozen :class:`Config`. Nothing here talks to AWS.

Checks of single values (regions, zones, ARNs, prefixes) are in
:mod:`provision.checks`; checks that judge keys together sit here, in the
section they belong to.

To add a key: declare it in its section below (checks, default, message),
use it where it is needed, and add its row to docs/CONFIG.md.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provision.checks import (
    AUTO_INGRESS,
    absolute_path,
    aws_region,
    bucket_suffix,
    exchange,
    full_bucket_name,
    iana_zone,
    ingress_item,
    ingress_list,
    job_times,
    minutes,
    not_reserved,
    policy_arn,
    prefix,
    principal_arn,
    secret_ref,
    unquoted_off,
    weekday,
)
from provision.errors import ConfigError
from provision.rules import TOKEN_CHECKS, WEEKDAYS
from provision.schema import (
    Context,
    Problem,
    Problems,
    boolean,
    build,
    cidr,
    date,
    distinct,
    each,
    hhmm,
    key,
    matches,
    nested,
    not_empty,
    one_of,
    optional,
    read_section,
    records,
    relpath,
    spec,
    string,
    text,
    unknown,
    whole,
)

ARCHITECTURES = ("x86_64", "arm64")
#: How the operator reaches the host: Session Manager (no inbound rule) or SSH from ``ssh_ingress``.
ACCESS_MODES = ("ssm", "ssh")
DEFAULT_CONFIG = "stack.yml"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"


# --------------------------------------------------------------------------- the sections


@dataclass(frozen=True)
class StackConfig:
    name: str = key(string, matches(r"^[a-z][a-z0-9-]{0,28}[a-z0-9]$",
                                    "{value!r} must be 2-30 lowercase letters, digits or '-', starting with a "
                                    "letter (it prefixes every resource name)"), not_reserved)
    region: str = key(string, aws_region)


@dataclass(frozen=True)
class Prefixes:
    deploy: str = key(prefix, default="deploy/")
    secrets: str = key(prefix, default="secrets/")
    # The original app's prefixes: its Athena table reads SimpleTraderLedger/ (docs/ORIGINAL.md).
    logs: str = key(prefix, default="SimpleTraderLogs/")
    ledger: str = key(prefix, default="SimpleTraderLedger/")

    def as_dict(self) -> dict[str, str]:
        return {"deploy": self.deploy, "secrets": self.secrets, "logs": self.logs, "ledger": self.ledger}

    @staticmethod
    def separate(values: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        found = []
        given = [v for v in values.values() if v is not None]
        for pos, a in enumerate(given):
            for other in given[pos + 1:]:
                if a.startswith(other) or other.startswith(a):
                    found.append(("", f"{a!r} and {other!r} overlap; each prefix must be separate "
                                      "(the instance role's access is granted per prefix)"))
        return found

    CROSS_CHECKS = (separate,)


@dataclass(frozen=True)
class BucketConfig:
    name: str = key(string, full_bucket_name)
    prefixes: Prefixes = key(nested(Prefixes), default={}, doc_default="the four defaults below")
    # Who may write deploy/ and secrets/ and read secrets/ (with the instance role): the bucket policy's
    # exceptions. Empty: the principal that runs `up`.
    operators: tuple[str, ...] = key(each(principal_arn), distinct("operator"), default=(),
                                     doc_default="`[]`")
    # Noncurrent versions under deploy/ and secrets/ (every publish makes some) expire after this many days.
    noncurrent_version_days: int = key(whole(1, 3650), default=30)
    # publish keeps this many code releases under deploy/releases/ and deletes older ones (then noncurrent).
    keep_releases: int = key(whole(1, 100), default=5)


def _graviton(instance_type: str) -> bool:
    family = instance_type.split(".", 1)[0]
    return bool(re.match(r"^(a1|[a-z]+\d+g[a-z]*)$", family))


@dataclass(frozen=True)
class InstanceConfig:
    type: str = key(string, matches(r"^([a-z][a-z0-9-]*)\.([a-z0-9]+)$",
                                    "{value!r} is not an EC2 instance type, e.g. t3.small or t4g.small"))
    architecture: str = key(string, one_of(ARCHITECTURES, "{value!r} must be one of {options}"))
    ami_ssm_parameter: str = key(
        string, matches(r"^/[A-Za-z0-9_./-]+$", "{value!r} must be an SSM parameter name starting with '/'"),
        default_from=lambda v: AMI_PARAMETER.format(arch=v.get("architecture") or "x86_64"),
        doc_default="`" + AMI_PARAMETER.format(arch="<architecture>") + "`")
    root_volume_gb: int = key(whole(8, 16384), default=16)
    static_ip: bool = key(boolean, default=True)
    # Managed policies (AWS's or the account's own) attached to the instance role besides the stack's own.
    extra_policy_arns: tuple[str, ...] = key(each(policy_arn), distinct("policy"), default=())
    # Secrets Manager secrets the host may read (GetSecretValue on exactly these).
    secrets: tuple[str, ...] = key(each(secret_ref), distinct("secret"), default=())

    @staticmethod
    def type_fits_architecture(v: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        itype, arch = v["type"], v["architecture"]
        if itype is None or arch is None:
            return []
        if _graviton(itype) and arch != "arm64":
            return [("type", f"{itype!r} is a Graviton (arm64) type but instance.architecture is {arch}; use an "
                             "x86_64 type such as t3.small, or set architecture: arm64")]
        if not _graviton(itype) and arch == "arm64":
            return [("type", f"{itype!r} is not an arm64 type; use a Graviton type such as t4g.small, or set "
                             "architecture: x86_64")]
        return []

    @staticmethod
    def image_fits_architecture(v: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        param, arch = v["ami_ssm_parameter"], v["architecture"]
        if param is None or arch is None:
            return []
        other = "arm64" if arch == "x86_64" else "x86_64"
        if other in param:
            return [("ami_ssm_parameter", f"{param!r} names an {other} image but instance.architecture is {arch}; "
                                          f"use the {arch} parameter, e.g. {AMI_PARAMETER.format(arch=arch)}")]
        return []

    CROSS_CHECKS = (type_fits_architecture, image_fits_architecture)


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str = key(cidr(16, 28))
    subnet_cidr: str = key(cidr(16, 28))
    access: str = key(one_of(ACCESS_MODES, "{value!r} must be ssm (Session Manager, no open port) or ssh (port 22 "
                                           "from network.ssh_ingress)"), default="ssm")
    ssh_ingress: tuple[str, ...] = key(ingress_list, each(ingress_item), distinct("CIDR"), default=())

    @property
    def auto_ingress(self) -> bool:
        """``ssh_ingress`` names the operator's current public address (looked up at plan/up time)."""
        return AUTO_INGRESS in self.ssh_ingress

    @staticmethod
    def subnet_inside(v: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        if v["vpc_cidr"] is None or v["subnet_cidr"] is None:
            return []
        vpc, subnet = ipaddress.ip_network(v["vpc_cidr"]), ipaddress.ip_network(v["subnet_cidr"])
        if subnet.subnet_of(vpc):  # type: ignore[arg-type]
            return []
        example = next(vpc.subnets(new_prefix=min(vpc.prefixlen + 8, 28)))
        return [("subnet_cidr", f"{subnet} is not inside network.vpc_cidr {vpc}; pick a subnet of it, e.g. {example}")]

    @staticmethod
    def ingress_fits_access(v: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        access, ingress = v["access"], v["ssh_ingress"]
        if access == "ssm" and ingress:
            return [("ssh_ingress", "opens port 22, but network.access is ssm (Session Manager, no inbound rule); "
                                    "set network.access: ssh to reach the host by SSH from these addresses, or "
                                    "remove them")]
        if access == "ssh" and ingress == ():
            return [("ssh_ingress", "is empty, but network.access is ssh: nothing could reach the host; list your "
                                    'address as a /32 (e.g. ["203.0.113.7/32"]), use auto (your current address), '
                                    "or set network.access: ssm")]
        return []

    CROSS_CHECKS = (subnet_inside, ingress_fits_access)


#: The longest command deadline the stop function can keep: its 900 s timeout (provision/lambdas.py), less
#: 20 s to report and 120 s to stop the instance after the routine (lambda/st_runtime.py, lambda/stop.py).
COMMAND_TIMEOUT_MAX = 760


def command_timeout(value: Any, ctx: Context) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > COMMAND_TIMEOUT_MAX:
        raise Problem(f"is {value}, but the stop function can wait at most {COMMAND_TIMEOUT_MAX} s for the "
                      "end-of-day routine (its 900 s timeout, less 20 s to report and 120 s to stop the "
                      f"instance); set it to {COMMAND_TIMEOUT_MAX} or less")
    return whole(30, COMMAND_TIMEOUT_MAX)(value, ctx)


@dataclass(frozen=True)
class ScheduleConfig:
    timezone: str = key(string, iana_zone)
    start: str = key(hhmm)
    stop: str = key(hhmm)
    weekdays: tuple[str, ...] = key(
        each(weekday), distinct("weekday"),
        not_empty("is empty; list the trading weekdays, e.g. [MON, TUE, WED, THU, FRI]"),
        default=["MON", "TUE", "WED", "THU", "FRI"], doc_default="`[MON, TUE, WED, THU, FRI]`")
    agent_wait_seconds: int = key(whole(10, 840), default=300)
    command_timeout_seconds: int = key(command_timeout, default=600)

    @staticmethod
    def stop_after_start(v: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        start, stop = v["start"], v["stop"]
        if start and stop and minutes(start) >= minutes(stop):
            return [("stop", f"{stop} is not after schedule.start {start}; both are exchange-local times on the "
                             "same day")]
        return []

    CROSS_CHECKS = (stop_after_start,)


@dataclass(frozen=True)
class SpecialSession:
    date: str = key(date)
    name: str = key(string)
    # The session's own hours (exchange-local); left out, the schedule's. A one-time schedule starts
    # and stops the host at them, and the cron jobs of `jobs` run then that day.
    start: str = key(optional(hhmm), default="", doc_default="`schedule.start`")
    stop: str = key(optional(hhmm), default="", doc_default="`schedule.stop`")
    jobs: dict[str, str] = key(job_times, default={}, doc_default="`{}`")

    def hours(self, schedule: ScheduleConfig) -> tuple[str, str]:
        """The session's (start, stop): its own, else the schedule's."""
        return self.start or schedule.start, self.stop or schedule.stop

    @staticmethod
    def hours_in_order(v: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        s = ctx.sections.get("schedule", {})
        start, stop = v["start"] or s.get("start"), v["stop"] or s.get("stop")
        if not start or not stop or None in (v["start"], v["stop"]):
            return []
        if minutes(start) >= minutes(stop):
            return [("stop", f"{stop} is not after the session's start {start}")]
        found = []
        for name, at in (v["jobs"] or {}).items():
            if not minutes(start) < minutes(at) < minutes(stop):
                found.append((f"jobs.{name}", f"{at} is outside the session's {start} .. {stop}; the host is "
                                              "stopped then"))
        return found

    CROSS_CHECKS = (hours_in_order,)


@dataclass(frozen=True)
class CalendarConfig:
    exchange: str = key(string, exchange)
    extra_holidays: tuple[str, ...] = key(each(date), default=())
    special_sessions: tuple[SpecialSession, ...] = key(
        records(SpecialSession, '{date: "2026-11-08", name: "Muhurat trading"}'), default=())


LINUX_USER = r"^[a-z_][a-z0-9_-]{0,31}$"


def not_root(value: str, ctx: Context) -> str:
    if value == "root":
        raise Problem("must not be root: the trading jobs run the trading program and its dependencies; use the "
                      "login user or a user of its own, e.g. trader")
    return value


@dataclass(frozen=True)
class HostConfig:
    user: str = key(string, matches(LINUX_USER, "{value!r} is not a Linux user name, e.g. ec2-user"))
    workdir: str = key(string, absolute_path)
    token_fresh_after: str = key(hhmm, default="06:00")
    # What a token published before token_fresh_after does: the trading job refuses to start (refuse), or
    # runs with a warning (warn); off: no check at all (a program that logs in to the broker itself).
    token_check: str = key(unquoted_off, one_of(TOKEN_CHECKS, "{value!r} must be one of {options}"),
                           default="refuse")
    # How Python 3.9 gets on the host: the distribution's (Amazon Linux 2023's python3 is 3.9) where there is
    # one, else built from source (auto); or always one way.
    python_install: str = key(one_of(("auto", "package", "source"), "{value!r} must be one of {options}"),
                              default="auto")
    #: Who runs the trading jobs and owns the workspace. Another user than ``user`` is created without sudo.
    trading_user: str = key(string, matches(LINUX_USER, "{value!r} is not a Linux user name, e.g. trader"), not_root,
                            default_from=lambda v: v.get("user") or "ec2-user", doc_default="the same as `user`")

    @staticmethod
    def workdir_reachable(v: dict[str, Any], ctx: Context) -> list[tuple[str, str]]:
        user, trading, workdir = v["user"], v["trading_user"], v["workdir"]
        if None in (user, trading, workdir) or user == trading:
            return []
        home = f"/home/{user}"
        if workdir == home or workdir.startswith(home + "/"):
            return [("workdir", f"{workdir} is in the home of {user}, which the trading user {trading} cannot "
                                f"enter (Amazon Linux makes homes 0700); put it in /home/{trading}/, e.g. "
                                f"/home/{trading}/projects/SimpleTrader")]
        return []

    CROSS_CHECKS = (workdir_reachable,)


@dataclass(frozen=True)
class ArtifactsConfig:
    """Paths as written in the config; :meth:`Config.artifact_path` resolves them."""

    code_dir: str = key(string)
    requirements: str = key(string)
    keys_file: str = key(string)
    token_file: str = key(string)


def within_schedule(value: str, ctx: Context) -> str:
    """A job's time must fall strictly inside the host's running window."""
    s = ctx.sections.get("schedule", {})
    start, stop = s.get("start"), s.get("stop")
    if start and stop and not minutes(start) < minutes(value) < minutes(stop):
        raise Problem(f"{value} is outside schedule.start {start} .. schedule.stop {stop}; the host is stopped then")
    return value


@dataclass(frozen=True)
class CronJob:
    name: str = key(string, matches(r"^[a-z0-9][a-z0-9-]{0,62}$",
                                    "{value!r} must be lowercase letters, digits and '-' (it names the cron job)"))
    time: str = key(hhmm, within_schedule)
    script: str = key(string, relpath)


def unique_names(jobs: tuple[CronJob, ...], ctx: Context) -> tuple[CronJob, ...]:
    items, seen = [], set()
    at: dict[str, str] = {}
    for idx, job in enumerate(jobs):
        if job.name in seen:
            items.append((f"[{idx}].name", f"{job.name!r} is used by another job; names must be unique"))
        seen.add(job.name)
        if job.time in at:
            items.append((f"[{idx}].time", f"{job.time} is also {at[job.time]}'s time: every job takes the job lock "
                                           "(flock -n), so one of the two would not run that minute (exit 75); give "
                                           "each job a minute of its own"))
        at.setdefault(job.time, job.name)
    if items:
        raise Problem("", items)
    return jobs


@dataclass(frozen=True)
class Uploads:
    trade_logs: str = key(string, relpath)
    ledger: str = key(string, relpath)


@dataclass(frozen=True)
class EodConfig:
    # The original app's closure step (its stop function ran src/setup/closure_setup.py).
    closure_script: str = key(text, relpath, default="src/setup/closure_setup.py")
    uploads: Uploads = key(nested(Uploads), default={"trade_logs": "trade_logs", "ledger": "ledger"},
                           doc_default="`{trade_logs: trade_logs, ledger: ledger}`")


def email(value: str, ctx: Context) -> str:
    if value and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        raise Problem(f'{value!r} is not an e-mail address; use "" for no e-mail')
    return value


@dataclass(frozen=True)
class NotificationsConfig:
    email: str = key(text, email, default="")


#: The top level: each section, in the order they are checked (later ones may look at earlier ones).
SECTIONS: dict[str, tuple[type | None, bool]] = {
    # name: (section class, or None for the list of cron jobs; whether the section may be left out)
    "stack": (StackConfig, False),
    "bucket": (BucketConfig, False),
    "instance": (InstanceConfig, False),
    "network": (NetworkConfig, False),
    "schedule": (ScheduleConfig, False),
    "calendar": (CalendarConfig, False),
    "host": (HostConfig, False),
    "artifacts": (ArtifactsConfig, False),
    "cron_jobs": (None, False),
    "eod": (EodConfig, True),
    "notifications": (NotificationsConfig, True),
}
CRON_JOBS = (records(CronJob, '{name: trading, time: "09:14", script: src/setup/setup.py}'), unique_names)


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


def bucket_name(cfg: Config | Mapping[str, Any], env: Mapping[str, str] | None = None) -> str:
    """The bucket's full name: ``bucket.name`` + the suffix from the environment.

    Accepts a loaded :class:`Config` or the raw config mapping (as parsed from YAML).
    """
    base = cfg.bucket.name if isinstance(cfg, Config) else str(cfg["bucket"]["name"])
    return base + bucket_suffix(env)


# --------------------------------------------------------------------------- reading the file


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        name = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if name in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {name!r}", key_node.start_mark)
        seen.add(name)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def validate(raw: Any, path: Path, env: Mapping[str, str] | None = None, today: dt.date | None = None) -> Config:
    """Check a parsed config; raise :class:`ConfigError` with every problem, else return it frozen."""
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["(top level): must be a mapping of sections (see docs/CONFIG.md)"])
    ctx = Context(os.environ if env is None else env, today)
    problems = Problems()
    for where, message in unknown("", raw, list(SECTIONS), what="section"):
        problems.add(where, message)
    sections: dict[str, Any] = {}
    for name, (cls, may_be_left_out) in SECTIONS.items():
        if cls is None:
            sections[name] = _cron_jobs(raw.get(name), problems, ctx)
            continue
        values = read_section(cls, raw.get(name), name, problems, ctx, optional=may_be_left_out)
        ctx.sections[name] = values
        sections[name] = values
    for where, message in _session_jobs(sections):
        problems.add(where, message)
    if problems.items:
        raise ConfigError(str(path), problems.lines)
    built = {name: sections[name] if cls is None else build(cls, sections[name])
             for name, (cls, _) in SECTIONS.items()}
    return Config(path=path, raw=raw, **built)


def _session_jobs(sections: dict[str, Any]) -> list[tuple[str, str]]:
    """A special session's ``jobs`` name jobs of ``cron_jobs``, at minutes no other entry of that day takes.

    Every cron entry takes the job lock (``flock -n``) before its guard decides whether the day is its own, so
    a weekly entry that only skips on a session's day still holds the lock for its minute, and a session's job
    at that minute would not run (exit 75).
    """
    weekly = {job.name: job.time for job in sections["cron_jobs"]}
    weekdays = set((sections.get("schedule") or {}).get("weekdays") or ())
    found = []
    for idx, session in enumerate(sections["calendar"].get("special_sessions") or ()):
        try:
            fires = WEEKDAYS[dt.date.fromisoformat(session.date).weekday()] in weekdays
        except (TypeError, ValueError):
            fires = False
        taken = {at: name for name, at in weekly.items()} if fires else {}
        for name, at in sorted(session.jobs.items()):
            where = f"calendar.special_sessions[{idx}].jobs.{name}"
            if name not in weekly:
                found.append((where, f"is not one of the cron_jobs ({', '.join(weekly) or 'none'})"))
                continue
            if fires and at == weekly[name]:
                continue  # the job's own weekly entry runs it then
            other = taken.get(at)
            if other is not None:
                found.append((where, f"{at} is when {other}'s entry fires that day and holds the job lock "
                                     f"(flock -n, even when the job then skips), so {name} would not run (exit 75); "
                                     "choose another minute"))
            taken[at] = name
    return found


def _cron_jobs(value: Any, problems: Problems, ctx: Context) -> tuple[CronJob, ...]:
    try:
        jobs = value
        for check in CRON_JOBS:
            jobs = check(jobs, ctx)
        return tuple(jobs)
    except Problem as exc:
        for sub, message in exc.items:
            problems.add(f"cron_jobs{sub}", message)
        return ()


def load(path: str | Path = DEFAULT_CONFIG, env: Mapping[str, str] | None = None,
         today: dt.date | None = None) -> Config:
    """Read and validate the config file; raise :class:`ConfigError` listing every problem."""
    p = Path(path)
    try:
        source = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), [f"(file): not found; pass --config PATH or create {p}"]) from None
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot be read: {exc.strerror}"]) from None
    try:
        raw = yaml.load(source, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(p), [f"(yaml): {where}{problem}"]) from None
    return validate(raw, p.resolve(), env=env, today=today)


def keys() -> list[tuple[str, bool, Any]]:
    """Every key of the schema as ``(dotted path, required, default)``, for docs and tests."""
    found: list[tuple[str, bool, Any]] = []

    def walk(cls: type, path: str) -> None:
        from provision.schema import required

        for f in spec(cls):
            meta = f.metadata
            default = meta["doc_default"] or meta["default"]
            found.append((f"{path}.{f.name}", required(f), default))

    for name, (cls, _) in SECTIONS.items():
        walk(cls if cls is not None else CronJob, name)
    walk(Prefixes, "bucket.prefixes")
    walk(Uploads, "eod.uploads")
    walk(SpecialSession, "calendar.special_sessions")
    return found
