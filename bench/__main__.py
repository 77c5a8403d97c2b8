"""``python -m bench [--only sync,provision,ansible,cost] [--json PATH]``: run the benchmarks, print a report."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import Section, render, write_json

ROOT = Path(__file__).resolve().parent.parent
ALL = ("sync", "provision", "ansible", "cost")


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
    }


def cost_section(config: Path) -> Section:
    from provision import config as config_mod
    from provision import cost

    section = Section("cost", "4. Monthly cost of the config (provision/cost.py)")
    t = time.monotonic()
    try:
        result = cost.monthly_cost(config_mod.load(str(config)))
        from bench.report import Figure

        section.add(Figure("monthly bill, scheduled (trading days only)", result["total"]["scheduled"], "USD",
                           "same instance 24/7", result["total"]["always_on"], "cheaper",
                           result["total"]["scheduled"] < result["total"]["always_on"]))
        section.details = result
        section.details["rendered"] = cost.render(result)
    except Exception as exc:  # noqa: BLE001 - reported in the section
        section.error = str(exc)[:500]
    section.seconds = time.monotonic() - t
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(ALL),
                        help=f"comma-separated subset of {','.join(ALL)} (default: all)")
    parser.add_argument("--json", type=Path, default=ROOT / ".state" / "bench" / "results.json",
                        help="where to write the numbers (default: .state/bench/results.json)")
    parser.add_argument("--config", type=Path, default=ROOT / "stack.yml", help="stack config for provision and cost")
    args = parser.parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in ALL]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    needs_root = {"sync", "ansible"} & set(wanted)
    if needs_root and os.geteuid() != 0:
        print(f"bench: {', '.join(sorted(needs_root))} need root (test hosts); skipping them", file=sys.stderr)
        wanted = [w for w in wanted if w not in needs_root]

    meta = machine()
    meta["command"] = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    load = ", ".join(f"{x:.2f}" for x in meta["load_avg_at_start"])
    print(f"bench: {', '.join(wanted)} on {meta['nproc']} CPUs, {meta['memory_gb']} GB, kernel {meta['kernel']}, "
          f"{meta['date']}, load average {load}", flush=True)
    t0 = time.monotonic()
    sections: dict[str, Section] = {}
    if "provision" in wanted:
        from bench.provbench import run_provision_bench

        print("bench: provisioning against the emulator ...", flush=True)
        sections["provision"] = run_provision_bench(config=args.config)
    if "cost" in wanted:
        sections["cost"] = cost_section(args.config)
    if "sync" in wanted or "ansible" in wanted:
        from bench.hostbench import run_host_benches

        print("bench: test hosts (sync, site.yml) ...", flush=True)
        for s in run_host_benches("sync" in wanted, "ansible" in wanted):
            sections[s.name] = s
    ordered = [sections[n] for n in ALL if n in sections]
    meta["total_seconds"] = round(time.monotonic() - t0, 1)
    meta["load_avg_at_end"] = os.getloadavg()
    text = render(ordered)
    print(text)
    if "cost" in sections and "rendered" in sections["cost"].details:
        print()
        print("  " + sections["cost"].details["rendered"].replace("\n", "\n  "))
    write_json(args.json, ordered, meta)
    load = ", ".join(f"{x:.2f}" for x in meta["load_avg_at_end"])
    print(f"\nbench: done in {meta['total_seconds']:.0f} s (load average now {load}); numbers in {args.json}")
    return 1 if any(s.error for s in ordered) else 0


if __name__ == "__main__":
    sys.exit(main())
