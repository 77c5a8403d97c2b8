"""Provisioning benchmark: API calls and wall time of up (from empty), a no-change up, and plan.

Runs ``python -m provision`` in process (``provision.cli.main``) against a
private emulator, with a botocore ``before-call`` hook on the client factory
it is given (the same way tests/provision records calls). Each call is
attributed to the resource the engine is finding, diffing, creating or
updating at that moment. A no-change ``up`` must make no mutating call.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from bench.report import Figure, Section
from devtools import localaws

ROOT = Path(__file__).resolve().parent.parent
# Operation names that change something (the rest describe, get, list or wait).
MUTATING = re.compile(
    r"^(Create|Put|Update|Attach|Associate|Run|Import|Authorize|Tag|Untag|Delete|Modify|Revoke|Allocate|Release|"
    r"Terminate|Add|Remove|Subscribe|Unsubscribe|Detach|Replace|Disassociate|Publish|Start|Stop|Send|Set|Enable)"
)
Echo = Callable[[str], None]


@dataclass
class Calls:
    """Every API call of one command, as (resource, service, operation)."""

    current: str = "(cli)"
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, event_name: str, **_: Any) -> None:
        parts = event_name.split(".", 2)
        self.calls.append((self.current, parts[1], parts[2]))

    def mutating(self) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if MUTATING.match(c[2])]

    def by_operation(self) -> Counter[str]:
        return Counter(f"{s}.{o}" for _, s, o in self.calls)

    def by_resource(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for r, s, o in self.calls:
            out.setdefault(r, Counter())[f"{s}.{o}"] += 1
        return out


@contextlib.contextmanager
def attributing(calls: Calls) -> Iterator[None]:
    """Name the resource the engine works on while its calls are made."""
    from provision import engine

    original = engine.Engine._change_for

    def change_for(self: engine.Engine, ctx: engine.Context, r: engine.Resource) -> engine.Change:
        calls.current = r.address
        return original(self, ctx, r)

    with mock.patch.object(engine.Engine, "_change_for", change_for):
        yield


@dataclass
class Run:
    command: str
    code: int
    seconds: float
    calls: Calls
    output: str


def run_command(argv: list[str], config: Path) -> Run:
    from provision import cli
    from provision.aws import Clients

    calls = Calls()
    clients = Clients("ap-south-1")
    clients.events.register("before-call", calls)
    out, err = io.StringIO(), io.StringIO()
    t = time.monotonic()
    with attributing(calls):
        code = cli.main(["--config", str(config), *argv], clients=clients, out=out, err=err,
                        confirm=lambda q: "yes")
    return Run(" ".join(argv), code, time.monotonic() - t, calls, out.getvalue() + err.getvalue())


def run_provision_bench(echo: Echo = print, config: Path | None = None) -> Section:
    section = Section("provision", "2. Provisioning against the emulator (API calls, wall time)")
    config = config or ROOT / "stack.yml"
    server = localaws.start()
    saved = dict(os.environ)
    t0 = time.monotonic()
    try:
        os.environ.update(server.env())
        for var in ("s3_bucket_suffix", "S3_BUCKET_SUFFIX", "AWS_PROFILE"):
            os.environ.pop(var, None)
        runs: list[Run] = []
        for argv in (["up", "--yes"], ["up", "--yes"], ["plan", "--detailed-exitcode"]):
            r = run_command(argv, config)
            runs.append(r)
            echo(f"  provision {r.command}: exit {r.code}, {len(r.calls.calls)} calls "
                 f"({len(r.calls.mutating())} mutating), {r.seconds:.1f} s")
            if r.code not in (0, 2) or (argv[0] == "up" and r.code != 0):
                raise RuntimeError(f"provision {r.command} exited {r.code}: {r.output[-600:]}")
        first, again, plan = runs
        section.add(Figure("up from empty: API calls", len(first.calls.calls), "calls",
                           note=f"{len(first.calls.mutating())} mutating"))
        section.add(Figure("up from empty: wall time", first.seconds, "s"))
        section.add(Figure("no-change up: API calls", len(again.calls.calls), "calls",
                           "up from empty", len(first.calls.calls)))
        section.add(Figure("no-change up: mutating calls", len(again.calls.mutating()), "calls",
                           goal="0", met=not again.calls.mutating()))
        section.add(Figure("no-change up: wall time", again.seconds, "s", "up from empty", first.seconds))
        section.add(Figure("plan (no changes): API calls", len(plan.calls.calls), "calls"))
        section.add(Figure("plan (no changes): wall time", plan.seconds, "s", goal="exit 0 (no changes)",
                           met=plan.code == 0))
        resources = list(dict.fromkeys(r for r, _, _ in first.calls.calls + again.calls.calls))
        per = {r.command + f"#{i}": r.calls.by_resource() for i, r in enumerate(runs)}
        rows = []
        for res in resources:
            counts = [sum(per[k].get(res, Counter()).values()) for k in per]
            mutating = sum(1 for rr, _, o in first.calls.calls if rr == res and MUTATING.match(o))
            ops = first.calls.by_resource().get(res, Counter())
            rows.append([res, *map(str, counts), str(mutating),
                         ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(ops.items()))])
        section.table("Calls per resource (up from empty / no-change up / plan; mutating in the first up)",
                      ["resource", "up", "up again", "plan", "mutating", "operations in the first up"], rows)
        section.table("Calls per service and operation (up from empty)", ["operation", "calls"],
                      [[op, str(n)] for op, n in sorted(first.calls.by_operation().items())])
        section.details = {
            r.command + f"#{i}": {
                "exit": r.code, "seconds": r.seconds, "calls": len(r.calls.calls),
                "mutating": [f"{a}:{s}.{o}" for a, s, o in r.calls.mutating()],
                "by_operation": dict(r.calls.by_operation()),
                "by_resource": {k: dict(v) for k, v in r.calls.by_resource().items()},
            }
            for i, r in enumerate(runs)
        }
    except Exception as exc:  # noqa: BLE001 - reported in the section
        section.error = str(exc)[:600]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
        section.seconds = time.monotonic() - t0
    return section
