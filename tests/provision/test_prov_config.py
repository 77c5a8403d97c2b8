"""Config validation: every problem reported with its key path, and no AWS call on a bad config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from provhelpers import Runner, base_config, write_config

from provision import config, cron
from provision.errors import ConfigError


def problems_of(raw: Any, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "stack.yml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        config.load(path, env=env or {})
    return info.value.problems


def test_the_repository_config_is_valid() -> None:
    cfg = config.load(Path(__file__).resolve().parents[2] / "stack.yml", env={})
    assert cfg.stack.name == "simpletrader"
    assert cfg.schedule.weekdays == ("MON", "TUE", "WED", "THU", "FRI")
    assert cfg.network.ssh_ingress == ()
    assert cfg.instance.static_ip is True
    assert cfg.bucket.prefixes.as_dict() == {
        "deploy": "deploy/",
        "secrets": "secrets/",
        "logs": "SimpleTraderLogs/",
        "ledger": "SimpleTraderLedger/",
    }
    assert cfg.bucket.operators == ()  # whoever runs `up`


def test_operators_accept_users_roles_with_paths_and_the_root(tmp_path: Path) -> None:
    raw = base_config()
    arns = ["arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0a1b",
            "arn:aws:iam::123456789012:root"]
    raw["bucket"]["operators"] = arns
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(raw))
    assert config.load(path, env={}).bucket.operators == tuple(arns)


def test_bucket_name_takes_the_suffix_from_either_variable() -> None:
    cfg = config.load(Path(__file__).resolve().parents[2] / "stack.yml", env={})
    assert config.bucket_name(cfg, {}) == "simpletrader-working-bucket"
    assert config.bucket_name(cfg, {"s3_bucket_suffix": "-ajith"}) == "simpletrader-working-bucket-ajith"
    assert config.bucket_name(cfg, {"S3_BUCKET_SUFFIX": "-ajith"}) == "simpletrader-working-bucket-ajith"
    assert config.bucket_name(cfg.raw, {"S3_BUCKET_SUFFIX": "-x"}) == "simpletrader-working-bucket-x"


def test_every_problem_is_reported_once_with_its_key(tmp_path: Path) -> None:
    raw = base_config()
    raw["stack"]["colour"] = "blue"  # unknown key
    raw["schedule"]["start"] = "8:45"  # bad time
    raw["schedule"]["stop"] = "25:00"  # bad time
    raw["schedule"]["timezone"] = "Asia/Mumbai"  # unknown zone
    raw["network"]["vpc_cidr"] = "10.42.0.0/33"  # bad CIDR
    raw["bucket"]["name"] = "SimpleTrader_Bucket"  # bad bucket name
    raw["schedule"]["weekdays"] = ["MON", "FUNDAY"]  # bad weekday
    raw["instance"]["architecture"] = "sparc"  # bad architecture
    raw["notifcations"] = {"email": "x"}  # unknown section (typo)
    problems = problems_of(raw, tmp_path)
    keys = [p.split(":", 1)[0] for p in problems]
    assert keys == [
        "notifcations",
        "stack.colour",
        "bucket.name",
        "instance.architecture",
        "network.vpc_cidr",
        "schedule.timezone",
        "schedule.start",
        "schedule.stop",
        "schedule.weekdays[1]",
    ], problems
    text = "\n".join(problems)
    assert "did you mean 'notifications'" in text
    assert 'e.g. "08:45"' in text
    assert "Asia/Kolkata" in text


def test_dst_zone_is_refused_with_the_reason(tmp_path: Path) -> None:
    raw = base_config()
    raw["schedule"]["timezone"] = "Europe/London"
    problems = problems_of(raw, tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("schedule.timezone: 'Europe/London' changes its UTC offset")
    assert "daylight saving" in problems[0]


def test_unquoted_time_read_as_a_number_gets_a_quoting_hint(tmp_path: Path) -> None:
    text = (
        (Path(__file__).resolve().parents[2] / "stack.yml")
        .read_text()
        .replace('stop: "15:40"', "stop: 15:40")
    )
    problems = problems_of(text, tmp_path)
    assert problems == ['schedule.stop: was read as the number 940; quote the time: "15:40"']


def test_token_check_off_may_be_written_unquoted(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "stack.yml").read_text()
    path = tmp_path / "stack.yml"
    path.write_text(text.replace("token_check: refuse", "token_check: off"))
    assert config.load(path, env={}).host.token_check == "off"  # YAML 1.1 reads the bare word as false
    assert problems_of(text.replace("token_check: refuse", "token_check: on"), tmp_path) == [
        "host.token_check: True must be one of refuse, warn, off"]


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("network", "subnet_cidr", "10.43.1.0/24", "network.subnet_cidr: 10.43.1.0/24 is not inside"),
        ("network", "ssh_ingress", ["0.0.0.0/0"], "network.ssh_ingress[0]: 0.0.0.0/0 would open SSH"),
        ("network", "ssh_ingress", ["203.0.113.7/24"], 'did you mean "203.0.113.0/24"'),
        ("network", "ssh_ingress", ["203.0.113.7"], "has no prefix length"),
        ("instance", "type", "t4g.small", "is a Graviton (arm64) type"),
        ("instance", "root_volume_gb", 2, "instance.root_volume_gb: must be a whole number"),
        ("instance", "static_ip", "yes", "instance.static_ip: must be true or false"),
        (
            "instance",
            "ami_ssm_parameter",
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
            "names an arm64 image",
        ),
        ("stack", "region", "ap-south-9", "stack.region: 'ap-south-9' is not an AWS region"),
        ("stack", "name", "Simple Trader", "stack.name:"),
        ("stack", "name", "aws-trader", "stack.name: 'aws-trader' starts with a prefix AWS reserves"),
        ("calendar", "exchange", "XXXX", "calendar.exchange: 'XXXX' is not a market code"),
        (
            "calendar",
            "extra_holidays",
            ["2026-02-30"],
            "calendar.extra_holidays[0]: '2026-02-30' is not a date",
        ),
        ("host", "workdir", "projects/SimpleTrader", "host.workdir:"),
        ("host", "trading_user", "root", "host.trading_user: must not be root"),
        ("host", "trading_user", "Trader", "host.trading_user: 'Trader' is not a Linux user name"),
        ("notifications", "email", "not-an-address", "notifications.email:"),
        ("bucket", "prefixes", {"deploy": "deploy/", "secrets": "deploy/secrets/"}, "overlap"),
        ("schedule", "weekdays", [], "schedule.weekdays: is empty"),
        ("schedule", "command_timeout_seconds", 880,
         "schedule.command_timeout_seconds: is 880, but the stop function can wait at most 760 s"),
        ("schedule", "command_timeout_seconds", 20, "schedule.command_timeout_seconds: must be a whole number from 30"),
        ("calendar", "special_sessions", [{"date": "2026-11-08", "name": "x", "nmae": "typo"}],
         "calendar.special_sessions[0].nmae: unknown key; did you mean 'name'?"),
        ("calendar", "special_sessions", [{"name": "no date"}], "calendar.special_sessions[0].date: is missing"),
        ("calendar", "special_sessions", ["2026-11-08"], "calendar.special_sessions[0]: must be a mapping like"),
        ("bucket", "operators", ["arn:aws:iam::123456789012:user/*"], "bucket.operators[0]: 'arn:aws:iam::"),
        ("bucket", "operators", ["arn:aws:sts::123456789012:assumed-role/Admin/alice"],
         "bucket.operators[0]: 'arn:aws:sts::123456789012:assumed-role/Admin/alice' is a role session; list the "
         "role itself, e.g. arn:aws:iam::123456789012:role/Admin"),
        ("bucket", "operators", "arn:aws:iam::123456789012:user/alice", "bucket.operators: must be a list"),
        ("bucket", "operators", ["arn:aws:iam::123456789012:role/a", "arn:aws:iam::123456789012:role/a"],
         "listed twice"),
    ],
)
def test_single_problems(tmp_path: Path, section: str, key: str, value: Any, expected: str) -> None:
    raw = base_config()
    raw[section][key] = value
    problems = problems_of(raw, tmp_path)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_the_trading_user_defaults_to_the_login_user_and_needs_a_reachable_workdir(tmp_path: Path) -> None:
    raw = base_config()
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(raw))
    assert config.load(path, env={}).host.trading_user == raw["host"]["user"]
    raw["host"]["trading_user"] = "trader"
    assert problems_of(raw, tmp_path) == [
        f"host.workdir: {raw['host']['workdir']} is in the home of {raw['host']['user']}, which the trading user "
        "trader cannot enter (Amazon Linux makes homes 0700); put it in /home/trader/, e.g. "
        "/home/trader/projects/SimpleTrader"
    ]
    raw["host"]["workdir"] = "/home/trader/projects/SimpleTrader"
    path.write_text(yaml.safe_dump(raw))
    assert config.load(path, env={}).host.trading_user == "trader"


def test_cron_job_outside_the_running_window(tmp_path: Path) -> None:
    raw = base_config()
    raw["cron_jobs"][0]["time"] = "08:30"
    problems = problems_of(raw, tmp_path)
    assert problems == [
        "cron_jobs[0].time: 08:30 is outside schedule.start 08:45 .. schedule.stop 15:40; the host "
        "is stopped then"
    ]


def test_suffix_from_the_environment_is_part_of_the_name_check(tmp_path: Path) -> None:
    raw = base_config()
    problems = problems_of(raw, tmp_path, env={"s3_bucket_suffix": "_Ajith"})
    assert len(problems) == 1 and "suffix '_Ajith' from the environment" in problems[0]
    problems = problems_of(raw, tmp_path, env={"s3_bucket_suffix": "-a", "S3_BUCKET_SUFFIX": "-b"})
    assert problems and "disagree" in problems[0]


def test_duplicate_keys_and_missing_sections(tmp_path: Path) -> None:
    problems = problems_of("stack:\n  name: a1\n  name: b2\n", tmp_path)
    assert len(problems) == 1 and "duplicate key 'name'" in problems[0] and "line 3" in problems[0]
    problems = problems_of({"stack": {"name": "ok-name", "region": "ap-south-1"}}, tmp_path)
    assert "bucket: is missing; add a 'bucket:' section (see docs/CONFIG.md)" in problems


def test_bad_config_makes_no_aws_call_and_prints_every_problem(run: Runner) -> None:
    raw = base_config()
    raw["schedule"]["timezone"] = "America/New_York"
    raw["network"]["subnet_cidr"] = "not-a-cidr"
    write_config(run.config, raw)
    for command in (
        ["plan"],
        ["up", "--yes"],
        ["down", "--yes"],
        ["status"],
        ["outputs"],
        ["key"],
        ["publish"],
        ["start"],
        ["stop"],
        ["doctor"],
    ):
        result = run(*command)
        assert result.code == 1
        assert run.last_recorder is not None and run.last_recorder.calls == []
        assert "2 problems; nothing was sent to AWS" in result.err
        assert "schedule.timezone:" in result.err and "network.subnet_cidr:" in result.err
        assert "Traceback" not in result.err


def test_missing_config_file_is_one_clear_line(run: Runner, tmp_path: Path) -> None:
    run.config = tmp_path / "nope.yml"
    result = run("plan")
    assert result.code == 1
    assert "nope.yml" in result.err and "--config" in result.err


def test_fixed_offset_zones() -> None:
    today = dt.date(2026, 11, 27)
    assert cron.fixed_offset("Asia/Kolkata", today) == dt.timedelta(hours=5, minutes=30)
    assert cron.fixed_offset("UTC", today) == dt.timedelta(0)
    assert cron.fixed_offset("America/New_York", today) is None
    assert cron.fixed_offset("Australia/Sydney", today) is None  # southern-hemisphere DST


def test_two_jobs_at_one_minute_are_refused(tmp_path: Path) -> None:
    raw = base_config()
    raw["cron_jobs"][1]["time"] = raw["cron_jobs"][0]["time"]  # every entry takes the job lock (flock -n)
    [problem] = problems_of(raw, tmp_path)
    assert problem.startswith(f"cron_jobs[1].time: {raw['cron_jobs'][0]['time']} is also "
                              f"{raw['cron_jobs'][0]['name']}'s time")
    assert "one of the two would not run that minute (exit 75)" in problem


def test_a_session_job_at_the_minute_of_another_jobs_weekly_entry_is_refused(tmp_path: Path) -> None:
    """On a weekday session the weekly entries still fire (their guard skips them), holding the job lock."""
    raw = base_config()
    first, second = raw["cron_jobs"][0], raw["cron_jobs"][1]
    raw["calendar"]["special_sessions"] = [
        {"date": "2026-11-09", "name": "Early", "jobs": {first["name"]: "08:50", second["name"]: first["time"]}}]
    [problem] = problems_of(raw, tmp_path)
    assert problem.startswith(f"calendar.special_sessions[0].jobs.{second['name']}: {first['time']} is when "
                              f"{first['name']}'s entry fires that day")
    # A Sunday session: no weekly entry fires, so that minute is free; the job's own weekly time is fine too.
    raw["calendar"]["special_sessions"] = [
        {"date": "2026-11-08", "name": "Muhurat", "start": "08:45", "stop": "15:40",
         "jobs": {first["name"]: "08:50", second["name"]: first["time"]}},
        {"date": "2026-11-10", "name": "Same", "jobs": {second["name"]: second["time"]}}]
    path = tmp_path / "fine.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert len(config.load(path, env={}).calendar.special_sessions) == 2
