"""`make demo`: a whole trading day on the local default, with a report.

Boots a test host for the EC2 instance and the emulator for AWS, provisions
the stack from stack.yml, configures the host with the playbooks, publishes
the example trading program, then runs the day: the start Lambda at 08:45
IST, the pre-market and trading cron jobs, the stop Lambda at 15:40 IST
(the program has the original app's layout, and the data lands under its
prefixes). Then a holiday, a stale token, a bad publish, a day with
`host.token_check: off` and no token published, and a special evening
session at its own hours (devtools/migrationdays.py). Needs root.

    python -m devtools.demo [--keep] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import boto3

from devtools import migrationdays, refusaldays
from devtools.testhost import DayFailed
from devtools.tradingday import Day


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where logs go (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the host and emulator running at the end")
    parser.add_argument("--only-day", action="store_true",
                        help="skip the holiday / stale token / bad publish / token_check off / special session days")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (the test host uses network namespaces and systemd-nspawn); run it as root",
              file=sys.stderr)
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simpletrader-day-"))
    day = Day(workdir, host_name="demo-host")
    code = 0
    try:
        day.bring_up()
        facts = day.trading_day()
        if not args.only_day:
            refusaldays.holiday(day)
            refusaldays.stale_token(day)
            refusaldays.bad_publish(day)
            migrationdays.token_check_off(day)
            migrationdays.special_session(day)
        print("\nNotifications of the normal day:")
        for n in facts["notifications"]:
            print(f"  - {n['subject']}")
        bucket = day.stack.functions["start"]["ST_BUCKET"] if day.stack else "?"
        print(f"\nWhat the host uploaded at the ends of the days (trade logs, the jobs' logs, ledger), "
              f"in s3://{bucket}:")
        s3 = boto3.client("s3")
        prefixes = day.prefixes()
        for prefix in (prefixes["logs"], prefixes["ledger"]):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    print(f"  {obj['Key']}  ({obj['Size']} bytes)")
    except DayFailed as exc:
        print(f"\ndemo: FAILED: {exc}", file=sys.stderr)
        code = 1
    finally:
        print(day.report.render())
        print(f"Logs of every step: {day.logs}")
        if args.keep:
            print(f"Kept running: test host demo-host (tests/hosts/testhost ssh demo-host), "
                  f"emulator {day.server.endpoint if day.server else '?'}")
        else:
            day.tear_down()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
