"""How the local days read a crontab and run its entries as cron would (devtools/tradingday.py)."""

from __future__ import annotations

import shlex

from devtools.crontab import as_user, cron_command, crontab_entries, parse_crontab

CRONTAB = """\
#Ansible: simpletrader-pre-market-setup
55 8 * * 1,2,3,4,5 flock -n -E 75 /run/lock/st.lock /bin/st-job pre-market-setup a.py >> /l/p-$(date +\\%F).log
#Ansible: simpletrader-trading
14 9 * * 1,2,3,4,5 flock -n -E 75 /run/lock/st.lock /bin/st-job trading b.py
#Ansible: simpletrader-trading@2026-11-10
14 18 10 11 * flock -n -E 75 /run/lock/st.lock /bin/st-job --session 2026-11-10 trading b.py
#Ansible: users-own
30 18 * * * echo keep me
MAILTO=""
"""


def test_entries_by_name_with_their_time_fields_and_commands() -> None:
    entries = crontab_entries(CRONTAB)
    assert list(entries) == ["simpletrader-pre-market-setup", "simpletrader-trading",
                             "simpletrader-trading@2026-11-10", "users-own"]
    assert entries["simpletrader-trading@2026-11-10"][0] == ["14", "18", "10", "11", "*"]
    assert entries["simpletrader-pre-market-setup"][1].endswith("/l/p-$(date +%F).log")
    jobs = parse_crontab(CRONTAB)
    assert jobs["__env__"] == 'MAILTO=""'
    assert "--session 2026-11-10" in jobs["simpletrader-trading@2026-11-10"]


def test_a_job_is_found_by_its_name_and_a_dated_entry_only_by_its_own() -> None:
    jobs = parse_crontab(CRONTAB)
    assert "--session" not in cron_command(jobs, "trading")
    assert "--session 2026-11-10" in cron_command(jobs, "simpletrader-trading@2026-11-10")


def test_another_trading_user_runs_it_through_sudo_from_root_directory() -> None:
    command = cron_command(parse_crontab(CRONTAB), "trading", "trader")
    assert command.startswith("env -i HOME=/home/trader LOGNAME=trader USER=trader ")
    assert as_user(command, "ec2-user", "ec2-user") == command  # the login user runs it itself
    assert as_user(command, "trader", "ec2-user") == f"cd / && sudo -n -u trader {command}"
    assert shlex.split(as_user(command, "trader", "ec2-user"))[3:6] == ["sudo", "-n", "-u"]
