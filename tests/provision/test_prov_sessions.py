"""Special sessions at their own hours: one-time schedules for the firings the weekly rules do not cover."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import boto3
import yaml
from provhelpers import Runner

from provision import sessions

GROUP = "simpletrader-sessions"


def next_weekday(weekday: int, after_days: int = 2) -> dt.date:
    day = dt.date.today() + dt.timedelta(days=after_days)
    while day.weekday() != weekday:
        day += dt.timedelta(days=1)
    return day


def with_sessions(run: Runner, items: list[dict[str, Any]]) -> None:
    raw = yaml.safe_load(run.config.read_text())
    raw["calendar"]["special_sessions"] = items
    run.config.write_text(yaml.safe_dump(raw))


def schedules() -> dict[str, dict[str, Any]]:
    sch = boto3.client("scheduler")
    found = {}
    for item in sch.list_schedules(GroupName=GROUP)["Schedules"]:
        found[item["Name"]] = sch.get_schedule(Name=item["Name"], GroupName=GROUP)
    return found


def test_sessions_get_one_time_schedules_only_where_the_weekly_rules_do_not_fire(run: Runner) -> None:
    sunday, monday, tuesday = next_weekday(6), next_weekday(0), next_weekday(1)
    past = dt.date.today() - dt.timedelta(days=30)
    with_sessions(run, [
        {"date": sunday.isoformat(), "name": "Muhurat trading", "start": "17:45", "stop": "19:30",
         "jobs": {"trading": "18:14"}},
        {"date": monday.isoformat(), "name": "A holiday opened"},  # weekly rule's hours: nothing to add
        {"date": tuesday.isoformat(), "name": "Long day", "stop": "17:00"},  # only its stop is its own
        {"date": past.isoformat(), "name": "Long gone"},
    ])
    assert run("up", "--yes").code == 0
    found = schedules()
    assert sorted(found) == [f"{sunday}-start", f"{sunday}-stop", f"{tuesday}-stop"]
    start = found[f"{sunday}-start"]
    assert start["ScheduleExpression"] == f"at({sunday}T17:45:00)"
    assert start["ScheduleExpressionTimezone"] == "Asia/Kolkata"
    assert start["Target"]["Arn"].endswith(":function:simpletrader-start")
    assert start["Target"]["RoleArn"].endswith(":role/simpletrader-sessions")
    assert json.loads(start["Target"]["Input"]) == {"session": sunday.isoformat(),
                                                     "time": f"{sunday}T12:15:00Z"}
    assert found[f"{tuesday}-stop"]["ScheduleExpression"] == f"at({tuesday}T17:00:00)"
    # The weekly rules stay on the schedule's weekdays: nothing fires on other Sundays.
    rule = boto3.client("events").describe_rule(Name="simpletrader-start")
    assert rule["ScheduleExpression"] == "cron(15 3 ? * MON-FRI *)"
    role = boto3.client("iam").get_role_policy(RoleName="simpletrader-sessions",
                                               PolicyName="simpletrader-sessions-access")["PolicyDocument"]
    [statement] = role["Statement"]
    assert statement["Action"] == ["lambda:InvokeFunction"] and len(statement["Resource"]) == 2
    assert run("plan", "--detailed-exitcode").code == 0

    with_sessions(run, [{"date": tuesday.isoformat(), "name": "Long day", "stop": "17:30"}])
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2 and "schedule.sessions" in plan.out
    assert run("up", "--yes").code == 0
    assert sorted(schedules()) == [f"{tuesday}-stop"]
    assert schedules()[f"{tuesday}-stop"]["ScheduleExpression"] == f"at({tuesday}T17:30:00)"


HINT = "the host's cron entries and the job guard's session list change only with " \
       "`ansible-playbook site.yml --tags cron`"


def test_plan_and_up_say_when_the_host_needs_its_cron_for_changed_sessions(run: Runner) -> None:
    assert run("up", "--yes").code == 0  # a stack without sessions
    monday = next_weekday(0)
    # Only job times: no one-time schedule changes, yet the host's crontab must.
    with_sessions(run, [{"date": monday.isoformat(), "name": "Early close", "jobs": {"trading": "10:00"}}])
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2, plan.out
    assert "  ~ schedule.sessions (simpletrader-sessions)\n      sessions_digest: null -> " in plan.out
    assert ("The special sessions change: `up` sets their one-time schedules, but " + HINT +
            " (after `up`); without it their jobs do not run.") in plan.out
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert up.out.rstrip().endswith("The special sessions changed: their one-time schedules are set, but " + HINT +
                                    "; run it now, or their jobs do not run."), up.out
    assert schedules() == {}  # the weekly rules cover that Monday's hours
    # Once deployed, the next plan and up are quiet about it.
    again = run("plan", "--detailed-exitcode")
    assert again.code == 0 and HINT not in again.out, again.out
    quiet = run("up", "--yes")
    assert quiet.code == 0 and HINT not in quiet.out
    assert run.last_recorder is not None and run.last_recorder.mutating() == []
    # A changed time says it again; a change elsewhere does not.
    with_sessions(run, [{"date": monday.isoformat(), "name": "Early close", "jobs": {"trading": "10:05"}}])
    assert HINT in run("up", "--yes").out
    raw = yaml.safe_load(run.config.read_text())
    raw["instance"]["static_ip"] = False
    run.config.write_text(yaml.safe_dump(raw))
    other = run("up", "--yes")
    assert other.code == 0 and HINT not in other.out
    # The schedule's hours, which a session without its own takes: the host's session list changes with them.
    raw = yaml.safe_load(run.config.read_text())
    raw["schedule"]["stop"] = "15:30"
    run.config.write_text(yaml.safe_dump(raw))
    assert HINT in run("up", "--yes").out
    # Removed sessions too: the host would still run the dated entries.
    with_sessions(run, [])
    plan = run("plan")
    assert 'sessions_digest: "' in plan.out and " -> null" in plan.out and HINT in plan.out
    assert HINT in run("up", "--yes").out
    assert run("plan", "--detailed-exitcode").code == 0


def test_a_new_stack_with_sessions_needs_all_of_site_yml_not_a_hint(run: Runner) -> None:
    with_sessions(run, [{"date": next_weekday(6).isoformat(), "name": "Muhurat trading", "start": "17:45",
                         "stop": "19:30"}])
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert HINT not in up.out
    assert run("plan", "--detailed-exitcode").code == 0  # the digest was set with the group


def test_firings_that_have_passed_are_not_wanted() -> None:
    from provhelpers import ROOT

    from provision import config

    raw = yaml.safe_load((ROOT / "stack.yml").read_text())
    raw["calendar"]["special_sessions"] = [{"date": "2026-11-08", "name": "Muhurat", "start": "17:45",
                                            "stop": "19:30"}]
    cfg = config.validate(raw, ROOT / "stack.yml", env={})
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    names = [f.name for f in sessions.firings(cfg, dt.datetime(2026, 11, 8, 18, 0, tzinfo=ist))]
    assert names == ["2026-11-08-stop"]  # the start has passed; the stop is still ahead
    assert sessions.firings(cfg, dt.datetime(2026, 11, 8, 20, 0, tzinfo=ist)) == []


def test_status_lists_the_coming_sessions_and_the_calendars_reach(run: Runner) -> None:
    sunday = next_weekday(6)
    with_sessions(run, [{"date": sunday.isoformat(), "name": "Muhurat trading", "start": "17:45", "stop": "19:30",
                         "jobs": {"trading": "18:14"}}])
    assert run("up", "--yes").code == 0
    status = run("status")
    assert status.code == 0, status.err
    assert f"session     {sunday} Muhurat trading: 17:45-19:30 Asia/Kolkata, jobs trading 18:14" in status.out
    # Computed from this config, not read from the deployed functions: the line says so.
    assert re.search(r"^calendar    XNSE holidays known up to \d{4}-12-31 \(as of this config; the functions have "
                     r"the calendar of the last `up`\)(; warning: .*)?$", status.out, re.MULTILINE), status.out
