"""The days of a user who comes from the original CDK app (issue 13), on the local stack of devtools/tradingday.py.

- The original program's layout is the normal day itself: stack.yml's defaults are the original's
  (``src/setup/closure_setup.py``, ``SimpleTraderLogs/<date>/``, ``SimpleTraderLedger/``), which
  ``Day.trading_day`` runs and tests/e2e asserts.
- ``token_check_off``: ``host.token_check: off``, and no token published that morning.
- ``special_session``: an evening session 18:00-19:30 with the trading job at 18:14.

Each changes the stack config as an operator would and runs ``provision up`` and ``ansible-playbook
site.yml`` again (``Day.reconfigure``). What the local world cannot do is played as on the normal day:
the functions are invoked with the events their schedules send, and the cron jobs are run with their
crontab lines. The host's clock cannot be moved, and the job guard takes "today" from it, so the
session is dated the host's today (exchange time); its hours are played by the events and by running
the entries cron would run at them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

from devtools.crontab import crontab_entries, crontab_jobs, run_cron_job
from devtools.handlers import invoke, load_handlers, notifications
from devtools.testhost import DayFailed
from devtools.tradingday import HOST_JOB_LOGS, IST, Day

START, STOP, TRADING = "18:00", "19:30", "18:14"
SESSION: dict[str, Any] = {"name": "Diwali evening session", "start": START, "stop": STOP,
                           "jobs": {"trading": TRADING}}


def token_check_off(day: Day) -> dict[str, Any]:
    """The next trading morning nobody publishes a token: the start function reads no token time and warns
    of nothing, the trading job runs on the day-old token, the stop uploads."""
    day.reconfigure("token_check: off", lambda cfg: cfg["host"].update(token_check="off"))  # noqa: S106 - a mode
    assert day.stack is not None and day.host is not None
    start_mod, stop_mod = load_handlers(day.stack.code_dir)
    morning = day.next_trading_morning()
    when = morning.date()
    day.agent_for()
    facts: dict[str, Any] = {"date": when.isoformat(), "manifest_key": day.stack.functions["start"]["ST_MANIFEST_KEY"]}
    with day.report.step(f"token_check off: start Lambda on {when}, no token published that morning",
                         look=str(day.log("lambda"))) as st:
        result, reads = day.start_at(start_mod, morning, "token_check off")
        facts["start"], facts["bucket_reads"] = result, reads
        if result.get("outcome") != "synced":
            raise DayFailed(f"start ended {result.get('outcome')}: {result.get('error')}")
        st.detail = f"synced; warnings {result['warnings'] or 'none'}; read {reads or 'nothing'} from the bucket"
    host_day = date.fromisoformat(day.host.sh("TZ=Asia/Kolkata date +%F").stdout.strip())
    with day.report.step("token_check off: the trading job runs on the day-old token", look=HOST_JOB_LOGS) as st:
        day.age_token()
        before = len(day.job_log("trading", host_day))
        out = run_cron_job(day.host, _jobs(day), "trading", day.log("cron"))
        facts["trading_exit"] = out.returncode
        facts["trading_log"] = day.job_log("trading", host_day)[before:]
        if out.returncode != 0:
            raise DayFailed(f"the trading job should run with token_check off, exit {out.returncode}: "
                            f"{facts['trading_log'][-400:]}")
        st.detail = "exit 0"
    facts["stop"] = day.scheduled(stop_mod, "stop", when, 15, 40, "end-of-day upload, then stop")
    facts["notifications"] = notifications(day.stack.queue_url)
    return facts


def special_session(day: Day) -> dict[str, Any]:
    """An evening session today (the host's date): the weekly firings and entries of the day do nothing,
    the session's own start, dated trading entry and stop do the day."""
    assert day.host is not None
    today = date.fromisoformat(day.host.sh("TZ=Asia/Kolkata date +%F").stdout.strip())
    session = dict(SESSION, date=today.isoformat())

    def add_session(cfg: dict[str, Any]) -> None:
        cfg["host"]["token_check"] = "refuse"  # noqa: S105 - a mode, not a secret
        cfg["calendar"]["special_sessions"] = [session]

    day.reconfigure(f"special session {today} {START}-{STOP}", add_session)
    assert day.stack is not None
    start_mod, stop_mod = load_handlers(day.stack.code_dir)
    day.agent_for()
    facts: dict[str, Any] = {"date": today.isoformat(), "session": session}
    with day.report.step("special session: the crontab has the dated entry, weekly entries on weekdays only",
                         look="crontab -l on the host") as st:
        entries = crontab_entries(day.host.sh("crontab -l").stdout)
        facts["crontab"] = {name: fields for name, (fields, _) in entries.items()}
        st.detail = ", ".join(f"{n}: {' '.join(f)}" for n, f in facts["crontab"].items())
    facts["weekly_start"] = day.scheduled(start_mod, "start", today, 8, 45, "the weekly firing; the session "
                                           "starts later")
    for name, when in (("pre-market-setup", "08:55"), ("trading", "09:14")):
        facts[f"weekly_{name}"] = _run_entry(day, name, today, f"{when} IST weekly cron entry {name}")
    facts["weekly_stop"] = day.scheduled(stop_mod, "stop", today, 15, 40, "the weekly firing; the session "
                                          "stops later")
    facts["session_start"] = _session_event(day, start_mod, "start", today, START)
    facts["session_trading"] = _run_entry(day, f"simpletrader-trading@{today.isoformat()}", today,
                                          f"{TRADING} IST dated cron entry of the session, trading", job="trading")
    facts["session_stop"] = _session_event(day, stop_mod, "stop", today, STOP)
    facts["notifications"] = notifications(day.stack.queue_url)
    return facts


def _jobs(day: Day) -> dict[str, str]:
    assert day.host is not None
    return crontab_jobs(day.host)


def _run_entry(day: Day, entry: str, today: date, what: str, job: str | None = None) -> dict[str, Any]:
    """Run one crontab entry as cron would; its exit code and what it added to its job's log."""
    assert day.host is not None
    job = job or entry
    with day.report.step(f"{what} (as cron runs it)", look=HOST_JOB_LOGS) as st:
        before = len(day.job_log(job, today))
        out = run_cron_job(day.host, _jobs(day), entry, day.log("cron"))
        added = day.job_log(job, today)[before:]
        st.detail = f"exit {out.returncode}: {added.strip().splitlines()[-1][:140] if added.strip() else ''}"
    return {"exit": out.returncode, "log": added}


def _session_event(day: Day, module: Any, fn: str, session_day: date, local: str) -> dict[str, Any]:
    """Invoke a function with the event a special session's one-time schedule sends (docs/CONTRACTS.md)."""
    assert day.stack is not None
    h, m = (int(x) for x in local.split(":"))
    at = datetime.combine(session_day, time(h, m), IST).astimezone(timezone.utc)
    event = {"session": session_day.isoformat(), "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    with day.report.step(f"{local} IST {fn} Lambda by the session's one-time schedule {event}",
                         look=str(day.log("lambda"))) as st:
        result, error = invoke(module, event, day.stack, fn, day.log("lambda"))
        if error:
            raise DayFailed(f"{fn} failed: {error}")
        st.detail = f"{result.get('outcome')}; instance {day.instance_state()}"
    return result

