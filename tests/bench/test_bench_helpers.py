"""The benchmark's own pieces that need no host: workload, report, recap parsing, call recording."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bench import workload
from bench.hostbench import recap
from bench.provbench import MUTATING, Calls
from bench.report import Figure, Section, render, write_json
from provision.codearchive import build_code_archive

SMALL = workload.Shape(modules=40, data_files=3, data_bytes=1000, changed_per_variant=5)


def digest(path: Path) -> str:
    return hashlib.sha256(build_code_archive(path)).hexdigest()


def test_workload_is_deterministic_and_a_variant_changes_only_some_modules(tmp_path: Path) -> None:
    a = workload.generate(tmp_path / "a", shape=SMALL)
    b = workload.generate(tmp_path / "b", shape=SMALL)
    c = workload.generate(tmp_path / "c", shape=SMALL, variant=1)
    assert digest(a) == digest(b) != digest(c)
    differing = [p.relative_to(a) for p in a.rglob("*.py")
                 if p.read_bytes() != (c / p.relative_to(a)).read_bytes()]
    assert len(differing) == SMALL.changed_per_variant
    assert (a / "requirements.txt").read_text() == (c / "requirements.txt").read_text()
    reqs = [ln for ln in (a / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(reqs) == 15 and any(r.startswith("numpy==") for r in reqs) and any(r.startswith("pandas==")
                                                                                for r in reqs)


def test_requirements_comment_changes_the_bytes_not_the_packages() -> None:
    plain, bumped = workload.requirements_text(), workload.requirements_text("changed")
    assert plain != bumped
    assert [ln for ln in bumped.splitlines() if not ln.startswith("#")] == plain.splitlines()[1:]


def test_figure_ratio_and_report(tmp_path: Path) -> None:
    f = Figure("sync warm", 2.0, "s", "original", 30.0, ">= 10x", True)
    assert f.ratio == 15.0
    assert Figure("x", 1.0).ratio is None
    s = Section("sync", "Sync")
    s.add(f)
    s.table("runs", ["run", "s"], [["a", "1.0"]])
    text = render([s])
    assert "15.0x" in text and "original" in text and "30.0 s" in text
    write_json(tmp_path / "r.json", [s], {"nproc": 2})
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["sections"]["sync"]["figures"][0]["ratio"] == 15.0


def test_recap_sums_the_play_recap() -> None:
    out = ("PLAY RECAP ****\nsimpletrader-host : ok=53   changed=19   unreachable=0    failed=0    skipped=3 "
           "rescued=0    ignored=0\n")
    assert recap(out) == {"ok": 53, "changed": 19, "unreachable": 0, "failed": 0, "skipped": 3, "rescued": 0,
                          "ignored": 0}
    assert recap("no recap here") == {}


def test_calls_are_counted_per_resource_and_mutating_ones_are_told_apart() -> None:
    calls = Calls()
    calls("before-call.ec2.DescribeVpcs")
    calls.current = "network.vpc"
    calls("before-call.ec2.CreateVpc")
    calls("before-call.ec2.DescribeVpcs")
    assert calls.by_operation()["ec2.DescribeVpcs"] == 2
    assert calls.by_resource()["network.vpc"]["ec2.CreateVpc"] == 1
    assert calls.mutating() == [("network.vpc", "ec2", "CreateVpc")]
    assert not MUTATING.match("GetParameter") and MUTATING.match("PutParameter")


def test_sync_phases_split_the_routines_output_by_step() -> None:
    from bench.hostbench import sync_phases

    lines = [(10.5, "sync: manifest release r (19 objects)"), (11.0, "sync: downloaded and verified 19 objects"),
             (11.1, "sync: keys.json has keys: a"), (11.6, "sync: extracted 1528 files of the code base"),
             (11.7, "sync: building virtualenv abc with /usr/bin/python3.9"), (19.6, "sync: ready release=r venv=abc")]
    phases = sync_phases(10.0, lines)
    assert phases == pytest.approx({"start+manifest": 0.5, "download": 0.5, "extract": 0.6, "venv+switch": 8.0})
    warm = [(10.2, "sync: manifest release r (19 objects)"),
            (10.3, "sync: downloaded and verified 18 objects (the code by its index)"),
            (10.5, "sync: built the code base: 1528 files, 1503 unchanged since the previous workspace, 25 fetched "
                   "in 1 ranged request(s)"),
            (10.6, "sync: reusing virtualenv abc"), (10.7, "sync: ready release=r venv=abc")]
    assert sync_phases(10.0, warm) == pytest.approx(
        {"start+manifest": 0.2, "download": 0.1, "code by index": 0.2, "venv+switch": 0.2})


def test_the_sync_result_is_read_from_the_result_file() -> None:
    from bench.hostbench import routine_result

    doc = {"version": 1, "command": "sync", "ok": True, "exit_code": 0, "message": "sync: ready release=r venv=v",
           "release": "r", "venv": "v", "venv_reused": True, "release_dir": "/x/r_1"}
    out = json.dumps(doc, sort_keys=True) + "\n\nBENCH-TIME 1.0 1.2 0\n"
    assert routine_result(out) == doc
    with pytest.raises(RuntimeError, match="no result file"):
        routine_result("cat: /root/bench-sync-result.json: No such file or directory\n\nBENCH-TIME 1.0 1.2 1\n")


def test_cli_runs_the_cost_benchmark_alone_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    out = tmp_path / "r.json"
    assert main(["--only", "cost", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    fig = data["sections"]["cost"]["figures"][0]
    assert fig["baseline"] > fig["value"] > 0
    assert set(data["sections"]) == {"cost"} and data["meta"]["nproc"]
    assert "total per month" in capsys.readouterr().out


def test_cli_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--only", "cost,speed"])
    assert exc.value.code == 2
    assert "speed" in capsys.readouterr().err
