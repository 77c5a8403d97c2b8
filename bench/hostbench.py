"""Benchmarks on test hosts: start-to-ready sync and site.yml converge times.

One local stack is brought up with devtools.tradingday.Day (test host,
emulator, ``provision up``, dynamic inventory, ``site.yml``, publish): its
first ``site.yml`` run on a fresh host is the "project ansible.cfg, first run"
figure. On that host the sync benchmark then publishes the generated workload
(bench/workload.py) with ``provision.publish`` and runs, as root, our
``simpletrader-workspace sync`` and the original's routine against the same
bucket and wheelhouse. For Ansible's defaults a second fresh host is booted
and converged with ``ANSIBLE_CONFIG`` pointing at a file that sets only what
the repository layout needs (``roles_path``), then taken down. The no-change
runs of both are also measured with the tunnel stand-in adding a delay to
every round trip (``TUNNEL_DELAY_MS``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import workload
from bench.report import Figure, Section
from devtools.ansiblerun import ansible_defaults_config, recap
from devtools.testhost import ROOT, Host, run
from devtools.tradingday import Day
from devtools.wheels import WHEEL_CACHE, download_wheels

Echo = Callable[[str], None]

# The no-change runs are measured twice: on this machine's veth (a round trip well under a millisecond) and
# through the tunnel stand-in holding each chunk this long each way. Session Manager carries SSH from the
# operator's machine through AWS's endpoint to the agent: tens of milliseconds a round trip, not measured
# here (no AWS account), so 25 ms each way is an assumption, said beside the figure.
TUNNEL_DELAY_MS = 25

# The original's start routine, as the CDK app's Lambda had the host run it
# (seed README): wipe the working directory, download every object, install
# requirements.txt into the system interpreter. Run by the host's boto3 (the
# routine's tool virtualenv; the host has no aws cli). Prints phase times as JSON.
ORIGINAL_ROUTINE = r'''
import json, os, shutil, subprocess, sys, tarfile, time
import boto3
from boto3.s3.transfer import TransferConfig
cfg = json.load(open("/etc/simpletrader/workspace.json"))
work, python = sys.argv[1], sys.argv[2]
deploy = cfg.get("prefixes", {}).get("deploy", "deploy/")
t0 = time.monotonic()
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work + "/wheelhouse")
s3 = boto3.client("s3", region_name=cfg.get("region"), endpoint_url=cfg.get("endpoint_url") or None)
manifest = json.loads(s3.get_object(Bucket=cfg["bucket"], Key=deploy + "manifest.json")["Body"].read())
t1 = time.monotonic()
transfer = TransferConfig()
for obj in manifest["objects"]:
    name = obj["key"].rsplit("/", 1)[-1]
    dest = work + ("/wheelhouse/" + name if obj["role"] == "wheel" else "/" + name)
    s3.download_file(cfg["bucket"], obj["key"], dest, Config=transfer)
t2 = time.monotonic()
with tarfile.open(work + "/code.tar.gz") as tar:
    tar.extractall(work)
t3 = time.monotonic()
proc = subprocess.run([python, "-m", "pip", "install", "--no-index", "--find-links", work + "/wheelhouse",
                       "-r", work + "/requirements.txt"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
t4 = time.monotonic()
print(json.dumps({"rc": proc.returncode, "clean": t1 - t0, "download": t2 - t1, "extract": t3 - t2,
                  "pip": t4 - t3, "total": t4 - t0, "tail": proc.stdout[-600:]}))
'''

# What every routine built on the AWS SDK pays before its first byte of work,
# ours and the original's alike: the interpreter, botocore, an S3 client and
# one GET of the manifest.
SDK_FLOOR = r'''
import json
import botocore.session
cfg = json.load(open("/etc/simpletrader/workspace.json"))
s3 = botocore.session.get_session().create_client("s3", region_name=cfg.get("region"),
                                                  endpoint_url=cfg.get("endpoint_url") or None)
key = cfg.get("prefixes", {}).get("deploy", "deploy/") + "manifest.json"
s3.get_object(Bucket=cfg["bucket"], Key=key)["Body"].read()
'''

ORIGINAL_WORKDIR = "/home/ec2-user/projects/SimpleTrader-original"
SITE_PACKAGES = "/usr/local/lib/python3.9/dist-packages"
STATE_DIR = "/var/lib/simpletrader"  # the role's default state_dir
WORKDIR = "/home/ec2-user/projects/SimpleTrader"  # the role's default workdir
SYNC_RESULT = "/root/bench-sync-result.json"  # the sync's --result-json file


def bench_wheelhouse(log: Path | None = None) -> Path:
    """The workload's wheels for the host (CPython 3.9 manylinux), downloaded once and cached."""
    return download_wheels(list(workload.REQUIREMENTS), WHEEL_CACHE / "bench", log)


def sync_phases(started: float, lines: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds per step of one sync, from its output lines stamped on arrival.

    A step ends when the line reporting it arrives: "downloaded and verified"
    closes the download, "extracted" the extraction (or "built the code base"
    the code built from the index), and the last line (the sync's result) the
    virtualenv (built or reused) plus the switch.
    """
    phases: dict[str, float] = {}
    previous = started
    names = (("manifest release", "start+manifest"), ("downloaded and verified", "download"),
             ("extracted", "extract"), ("built the code base", "code by index"))
    for t, msg in lines[:-1]:
        for needle, name in names:
            if needle in msg:
                phases[name] = phases.get(name, 0.0) + (t - previous)
                previous = t
                break
    if lines:
        phases["venv+switch"] = lines[-1][0] - previous
    return phases


def routine_result(text: str) -> dict[str, Any]:
    """The routine's --result-json document from the output of ``cat`` on the host (docs/CONTRACTS.md)."""
    docs = [ln for ln in text.splitlines() if ln.startswith("{")]
    if not docs:
        raise RuntimeError(f"the routine wrote no result file: {text[-400:]}")
    result: dict[str, Any] = json.loads(docs[-1])
    return result


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class BenchDay(Day):
    """The local stack of devtools.tradingday.Day under a stack name of its own.

    A stack name of its own, so that nothing it makes (its inventory host,
    its resources) can be taken for the demo's or the e2e's.
    """

    def __init__(self, *args: Any, stack_name: str, **kwargs: Any) -> None:
        self.stack_name = stack_name
        # Milliseconds the tunnel stand-in holds each chunk each way (devtools/tunnel.py): 0, or a round
        # trip nearer one through Session Manager than this machine's veth.
        self.tunnel_delay_ms = 0
        super().__init__(*args, **kwargs)

    def tool_env(self) -> dict[str, str]:
        env = super().tool_env()
        if self.tunnel_delay_ms:
            env["ST_TUNNEL_DELAY_MS"] = str(self.tunnel_delay_ms)
            # A connection of its own: one kept open by an earlier run would carry these runs undelayed.
            control_dir = Path(env["ANSIBLE_SSH_CONTROL_PATH_DIR"] + f"-d{self.tunnel_delay_ms}")
            control_dir.mkdir(mode=0o700, exist_ok=True)
            self._control_dirs.add(control_dir)
            env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_dir)
        return env

    def write_config(self) -> Path:
        import yaml

        path = super().write_config()
        cfg = yaml.safe_load(path.read_text())
        cfg["stack"]["name"] = self.stack_name
        path.write_text("# Written by bench/hostbench.py from the repository's stack.yml\n"
                        + yaml.safe_dump(cfg, sort_keys=False))
        return path


class HostBench:
    """Holds the Day, runs the host-side measurements, always tears everything down."""

    def __init__(self, workdir: Path, echo: Echo = print, host_prefix: str = "bench",
                 day_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.echo = echo
        self.tag = f"{os.getpid() % 10000}"
        self.name_a = f"{host_prefix}-a{self.tag}"
        self.name_b = f"{host_prefix}-b{self.tag}"
        self.day = BenchDay(day_dir or workdir / "day", host_name=self.name_a, echo=lambda s: echo("  " + s),
                            suffix="-bench", stack_name=f"{host_prefix}{self.tag}")
        self.facts_dir = workdir / "ansible-facts"
        self.extra_hosts: list[Host] = []
        self.ansible_runs: list[dict[str, Any]] = []

    # -- ansible

    def _playbook(self, label: str, defaults: bool, *args: str) -> dict[str, Any]:
        """One site.yml run against whatever the inventory maps the instance to."""
        env: dict[str, str] = {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(self.facts_dir)}
        if defaults:
            env["ANSIBLE_CONFIG"] = str(ansible_defaults_config(self.workdir))
        t = time.monotonic()
        with environ(**env):
            out_text = self._converge_output(*args)
        seconds = time.monotonic() - t
        counts = recap(out_text)
        result = {"label": label, "seconds": seconds, "recap": counts, "ansible_cfg": "defaults" if defaults
                  else "project"}
        self.ansible_runs.append(result)
        self.echo(f"  {label}: {seconds:.1f} s, {counts}")
        return result

    def _converge_output(self, *args: str) -> str:
        # Day.converge returns only the recap line; the log has the run's whole output.
        log = self.day.log("ansible")
        size = log.stat().st_size if log.exists() else 0
        self.day.converge(*args)
        with open(log) as fh:
            fh.seek(size)
            return fh.read()

    def _map_inventory_to(self, host: Host) -> None:
        """The tunnel stand-in carries the instance's SSH connections to ``host`` from now on."""
        self.day.tunnel_targets = dict.fromkeys(self.day.tunnel_targets, host.ip)
        self.day.ssh_key = host.key

    # -- host commands

    def root(self, script: str, timeout: float = 1800) -> tuple[float, str, int]:
        """Run ``script`` as root on host A (as SSM does); wall time measured on the host."""
        assert self.day.host is not None
        wrapped = (f"s=$(date +%s.%N); {script}; rc=$?; e=$(date +%s.%N); "
                   "echo; echo \"BENCH-TIME $s $e $rc\"")
        proc = self.day.host.sh(f"sudo -n bash -c {shlex.quote(wrapped)}", check=False, timeout=timeout,
                                log=self.day.log("bench-host"))
        last = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-TIME ")]
        if not last:
            raise RuntimeError(f"no timing from the host (exit {proc.returncode}): {proc.stderr[-400:]}")
        _, s, e, rc = last[-1].split()
        return float(e) - float(s), proc.stdout, int(rc)

    def publish(self, code_dir: Path, requirements: Path, wheelhouse: Path) -> dict[str, Any]:
        import boto3

        from provision.publish import publish

        assert self.day.stack is not None
        bucket = self.day.stack.functions["start"]["ST_BUCKET"]
        ex = ROOT / "example" / "secrets"
        return publish(boto3.client("s3"), bucket=bucket, prefixes={"deploy": "deploy/", "secrets": "secrets/"},
                       code_dir=code_dir, requirements=requirements, keys_file=ex / "keys.json",
                       token_file=ex / "access_token.txt", wheelhouse=wheelhouse, log=lambda s: None)

    def our_sync(self, label: str) -> dict[str, Any]:
        # Each output line stamped on arrival: the routine flushes one line per step.
        seconds, out, rc = self.root(
            f"set -o pipefail; simpletrader-workspace sync --result-json {SYNC_RESULT} 2>&1 | "
            "while IFS= read -r l; do printf 'T %s %s\\n' \"$(date +%s.%N)\" \"$l\"; done")
        stamped = [ln.split(" ", 2) for ln in out.splitlines() if ln.startswith("T ")]
        lines = [(float(t), msg) for _, t, msg in stamped if msg.startswith("sync: ")]
        start = [ln for ln in out.splitlines() if ln.startswith("BENCH-TIME ")]
        result = routine_result(self.root(f"cat {SYNC_RESULT}")[1])
        if rc != 0 or not result["ok"]:
            raise RuntimeError(f"{label}: sync failed: {result['message']}")
        reused = bool(result["venv_reused"])
        started, ended = float(start[-1].split()[1]), float(start[-1].split()[2])
        phases = sync_phases(started, lines)
        # The ready marker is written before old releases and venvs are pruned: when was the workspace ready?
        _, stat, _ = self.root(f"/usr/bin/python3.9 -c \"import os; print('READY', os.stat('{STATE_DIR}/ready.json')"
                               ".st_mtime)\"")
        ready_at = float(next(ln.split()[1] for ln in stat.splitlines() if ln.startswith("READY ")))
        phases["after ready (prune)"] = max(0.0, ended - ready_at)
        self.echo(f"  {label}: {seconds:.1f} s ({'venv reused' if reused else 'venv built'}; "
                  + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()) + ")")
        return {"label": label, "seconds": seconds, "venv_reused": reused, "last_line": result["message"],
                "phases": phases, "ready_seconds": ready_at - started}

    def original(self, label: str, clean_site: bool) -> dict[str, Any]:
        if clean_site:
            self.root(f"cd {SITE_PACKAGES} && ls -A | grep -vxF -f /root/bench-site-before | xargs -r rm -rf; "
                      "cd /usr/local/bin && ls -A | grep -vxF -f /root/bench-bin-before | xargs -r rm -f")
        seconds, out, rc = self.root(
            f"/opt/simpletrader/venv/bin/python /root/bench-original.py {ORIGINAL_WORKDIR} /usr/bin/python3.9")
        phases = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
        if rc != 0 or phases["rc"] != 0:
            raise RuntimeError(f"{label}: the original routine failed: {phases.get('tail', out[-400:])}")
        phases.pop("tail", None)
        self.echo(f"  {label}: {seconds:.1f} s (download {phases['download']:.1f}, pip {phases['pip']:.1f})")
        return {"label": label, "seconds": seconds, "phases": phases, "clean_site": clean_site}

    # -- the benchmarks

    def sync_bench(self, section: Section, rounds: int = 3) -> None:
        wheels = bench_wheelhouse(self.day.log("pip"))
        self._put_root_file("/root/bench-original.py", ORIGINAL_ROUTINE)
        self.root(f"mkdir -p {SITE_PACKAGES}; ls -A {SITE_PACKAGES} > /root/bench-site-before; "
                  "ls -A /usr/local/bin > /root/bench-bin-before")
        code = self.workdir / "code"
        reqs = self.workdir / "requirements.txt"
        runs: list[dict[str, Any]] = []

        def release(variant: int, comment: str = "") -> dict[str, Any]:
            workload.generate(code, variant=variant)
            reqs.write_text(workload.requirements_text(comment))
            m = self.publish(code, reqs, wheels)
            code_obj = next(o for o in m["objects"] if o["role"] == "code")
            return {"release": m["release"], "objects": len(m["objects"]), "code_bytes": code_obj["size"],
                    "wheel_bytes": sum(o["size"] for o in m["objects"] if o["role"] == "wheel"),
                    "files": workload.count_files(code)}

        info = release(0)
        section.details["workload"] = info
        self.echo(f"  workload: {info['files']} files, code.tar.gz {info['code_bytes'] / 1e6:.1f} MB, "
                  f"{len(workload.REQUIREMENTS)} requirements, wheels {info['wheel_bytes'] / 1e6:.1f} MB")
        venv_s, _, _ = self.root("/usr/bin/python3.9 -m venv /root/bench-venv-probe; rm -rf /root/bench-venv-probe")
        section.details["python_m_venv_seconds"] = venv_s
        self.echo(f"  diagnostic: python3.9 -m venv alone takes {venv_s:.1f} s on this host")
        self._put_root_file("/root/bench-floor.py", SDK_FLOOR)
        floors = sorted(self.root("/opt/simpletrader/venv/bin/python /root/bench-floor.py")[0] for _ in range(3))
        floor_s = floors[1]
        section.details["sdk_floor_seconds"] = floor_s
        self.echo(f"  diagnostic: python + botocore + reading the manifest takes {floor_s:.2f} s on this host")
        variant = 0
        for i in range(rounds):
            n = f"{i + 1}/{rounds}"
            # A new host again (not timed): no workspace, no virtualenv, no cached wheel, no uv cache.
            self.root(f"rm -rf {STATE_DIR}/venvs {STATE_DIR}/wheelhouse {STATE_DIR}/uv-cache {STATE_DIR}/releases "
                      f"{STATE_DIR}/ready.json {WORKDIR}")
            if i:
                variant += 1
                release(variant)
            runs.append(self.our_sync(f"ours cold, first sync (a new host) {n}") | {"kind": "cold"})
            runs.append(self.original(f"original, first morning (clean site-packages) {n}", clean_site=True)
                        | {"kind": "orig_clean"})
            for j in range(2):
                variant += 1
                release(variant)
                runs.append(self.our_sync(f"ours warm, new code release {n}.{j + 1}") | {"kind": "warm"})
                if j == 0:
                    runs.append(self.original(f"original, next morning (packages installed) {n}", clean_site=False)
                                | {"kind": "orig_installed"})
            variant += 1
            release(variant, comment=f"requirements changed {variant}")
            runs.append(self.our_sync(f"ours cold, requirements changed (wheels, uv cache kept) {n}")
                        | {"kind": "cold2"})
        section.details["runs"] = runs

        def median(kind: str) -> float:
            return statistics.median(r["seconds"] for r in runs if r["kind"] == kind)

        cold, cold2, warm = median("cold"), median("cold2"), median("warm")
        orig_clean, orig_inst = median("orig_clean"), median("orig_installed")
        warm_n = sum(1 for r in runs if r["kind"] == "warm")
        section.add(Figure(f"sync cold, first sync (median of {rounds})", cold, "s",
                           "original, first morning", orig_clean, "no slower", cold <= orig_clean,
                           note="both install every package"))
        section.add(Figure(f"sync cold, requirements changed (median of {rounds})", cold2, "s",
                           "original, first morning", orig_clean, "no slower", cold2 <= orig_clean))
        section.add(Figure(f"sync warm, new code release (median of {warm_n})", warm, "s",
                           "original, next morning", orig_inst, ">= 10x faster", orig_inst >= 10 * warm,
                           note="like for like: the original's packages are already installed"))
        section.add(Figure(f"sync warm, new code release (median of {warm_n})", warm, "s",
                           "original, first morning", orig_clean, ">= 10x faster", orig_clean >= 10 * warm,
                           note="against the original installing everything again"))
        section.table("Fixed costs on this host", ["step", "seconds"],
                      [["python3.9 -m venv alone (ensurepip; uv does not run it; the original installs into the "
                        "system python)", f"{venv_s:.1f}"],
                       ["python + botocore + one GET of the manifest (median of 3): paid by ours and the original "
                        "alike", f"{floor_s:.2f}"],
                       ["a 10x warm sync against the original's next morning would have to take",
                        f"{orig_inst / 10:.2f}"]])
        section.table("Every run, in order (wall time on the host, as root; ready = ready.json written)",
                      ["run", "seconds", "ready", "steps"],
                      [[r["label"], f"{r['seconds']:.1f}",
                        f"{r['ready_seconds']:.1f}" if "ready_seconds" in r else "-",
                        ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items() if k not in ("rc", "total"))]
                       for r in runs])

    def _put_root_file(self, path: str, text: str) -> None:
        assert self.day.host is not None
        run([*self.day.host.ssh_argv(), f"sudo -n tee {shlex.quote(path)} >/dev/null"], input_text=text)

    def _cron_time(self, before: str, after: str) -> None:
        """Change the first cron job's time in the day's stack config (what an operator edits)."""
        text = self.day.config.read_text()
        if f"time: {before}" not in text and f"time: '{before}'" not in text:
            raise RuntimeError(f"no cron job at {before} in {self.day.config}")
        self.day.config.write_text(text.replace(f"time: {before}", f"time: {after}", 1)
                                   .replace(f"time: '{before}'", f"time: '{after}'", 1))

    def targeted_change(self) -> dict[str, Any]:
        """One cron time changed, applied with `site.yml --tags cron`; then changed back the same way."""
        self._cron_time("08:55", "08:57")
        try:
            result = self._playbook("site.yml --tags cron after one cron time changed, project ansible.cfg",
                                    False, "--tags", "cron")
            assert self.day.host is not None
            if "57 8 " not in self.day.host.sh("crontab -l").stdout:
                raise RuntimeError("the changed cron time did not reach the host's crontab")
        finally:
            self._cron_time("08:57", "08:55")
            self._playbook("site.yml --tags cron, the time changed back", False, "--tags", "cron")
        return result

    def _delayed_runs(self, label: str, defaults: bool, repeats: int) -> list[dict[str, Any]]:
        """No-change runs with the tunnel holding each chunk TUNNEL_DELAY_MS each way, over a new connection."""
        self.day.tunnel_delay_ms = TUNNEL_DELAY_MS
        try:
            return [self._playbook(f"site.yml no-change run #{i + 1}, {2 * TUNNEL_DELAY_MS} ms round trips, {label}",
                                   defaults=defaults) for i in range(repeats)]
        finally:
            self.day.tunnel_delay_ms = 0

    def ansible_bench(self, section: Section, first_project: dict[str, Any], repeats: int = 2) -> None:
        """First run on a fresh host and no-change runs (best of ``repeats``), project cfg vs defaults, on this
        machine's veth and with longer round trips in the tunnel; and a targeted change (one cron time,
        `--tags cron`)."""
        again_project = [self._playbook(f"site.yml no-change run #{i + 1}, project ansible.cfg", defaults=False)
                         for i in range(repeats)]
        slow_project = self._delayed_runs("project ansible.cfg", False, repeats)
        targeted = self.targeted_change()
        try:
            host_b = Host.up(self.name_b)
        except BaseException:
            Host(self.name_b, "", "", "").down()  # whatever a failed boot left of our own host
            raise
        self.extra_hosts.append(host_b)
        try:
            self._map_inventory_to(host_b)
            first_default = self._playbook("site.yml first run, Ansible defaults", defaults=True)
            if first_default["recap"].get("changed", 0) == 0:
                raise RuntimeError("the first run with Ansible's defaults changed nothing: it did not reach the "
                                   f"fresh host {self.name_b}")
            again_default = [self._playbook(f"site.yml no-change run #{i + 1}, Ansible defaults", defaults=True)
                             for i in range(repeats)]
            slow_default = self._delayed_runs("Ansible defaults", True, repeats)
        finally:
            assert self.day.host is not None
            self._map_inventory_to(self.day.host)
            host_b.down()
            self.extra_hosts.remove(host_b)
        def no_change(name: str, project: list[dict[str, Any]], default: list[dict[str, Any]],
                      baseline: str) -> float:
            """The no-change figure of the best runs; returns the defaults' best seconds."""
            best_project = min(r["seconds"] for r in project)
            best_default = min(r["seconds"] for r in default)
            unchanged = all(r["recap"].get("changed", -1) == 0 for r in project + default)
            section.add(Figure(f"site.yml no-change run (best of {repeats}){name}, project ansible.cfg", best_project,
                               "s", baseline, best_default, "at least 3x faster, changed=0",
                               unchanged and best_default >= 3 * best_project))
            return best_default

        section.add(Figure("site.yml first run on a fresh host, project ansible.cfg", first_project["seconds"], "s",
                           "Ansible defaults", first_default["seconds"]))
        # The veth's figure first: the converge check reads the first no-change figure.
        best_default = no_change("", again_project, again_default, "Ansible defaults")
        no_change(f" through a tunnel adding {TUNNEL_DELAY_MS} ms each way ({2 * TUNNEL_DELAY_MS} ms round trips)",
                  slow_project, slow_default, "Ansible defaults, same tunnel")
        section.add(Figure("one cron time changed: site.yml --tags cron, project ansible.cfg", targeted["seconds"], "s",
                           "no-change site.yml, Ansible defaults", best_default,
                           "at most a third of the baseline, changed >= 1",
                           targeted["seconds"] * 3 <= best_default
                           and targeted["recap"].get("changed", 0) >= 1))
        runs = [first_project, *again_project, *slow_project, targeted, first_default, *again_default, *slow_default]
        section.table("Every run (wall time of ansible-playbook on this machine)",
                      ["run", "seconds", "ok", "changed", "failed", "skipped"],
                      [[r["label"], f"{r['seconds']:.1f}", *(str(r["recap"].get(k, "-"))
                                                              for k in ("ok", "changed", "failed", "skipped"))]
                       for r in runs])
        section.details["runs"] = runs
        section.details["defaults_cfg"] = "[defaults] roles_path = <repo>/roles (nothing else)"
        section.details["tunnel_delay_ms_each_way"] = TUNNEL_DELAY_MS

    # -- the whole thing

    def run(self, want_sync: bool, want_ansible: bool, sync_section: Section | None,
            ansible_section: Section | None) -> None:
        try:
            t = time.monotonic()
            with environ(ANSIBLE_CACHE_PLUGIN_CONNECTION=str(self.facts_dir)):
                self.day.bring_up()
            step = next(s for s in self.day.report.steps if s.name.startswith("ansible-playbook"))
            first = {"label": "site.yml first run, project ansible.cfg", "seconds": step.seconds,
                     "recap": recap("x : " + step.detail), "ansible_cfg": "project"}
            self.ansible_runs.append(first)
            if ansible_section is not None:
                ansible_section.details["bring_up_seconds"] = time.monotonic() - t
            if want_sync and sync_section is not None:
                t = time.monotonic()
                try:
                    self.sync_bench(sync_section)
                except Exception as exc:  # noqa: BLE001 - reported in the section, the rest still runs
                    sync_section.error = str(exc)[:500]
                sync_section.seconds = time.monotonic() - t
            if want_ansible and ansible_section is not None:
                t = time.monotonic()
                try:
                    self.ansible_bench(ansible_section, first)
                except Exception as exc:  # noqa: BLE001 - reported in the section
                    ansible_section.error = str(exc)[:500]
                ansible_section.seconds = time.monotonic() - t
        finally:
            for host in self.extra_hosts:
                host.down()
            self.day.tear_down()


def run_host_benches(want_sync: bool, want_ansible: bool, echo: Echo = print,
                     workdir: Path | None = None, day_dir: Path | None = None) -> list[Section]:
    """Run the host benchmarks asked for. The generated workload lives in a temp dir (or ``workdir``); the
    local stack's config and logs in ``day_dir`` (default ``.state/bench/day``, replaced each run) so a
    failure can be read afterwards."""
    day_dir = day_dir or ROOT / ".state" / "bench" / "day"
    if day_dir.exists():
        shutil.rmtree(day_dir)
    sections: list[Section] = []
    sync_section = Section("sync", "1. Start-to-ready sync on a test host") if want_sync else None
    ansible_section = Section("ansible", "3. Configuration: site.yml converge times") if want_ansible else None
    with tempfile.TemporaryDirectory(prefix="simpletrader-bench-") as tmp:
        bench = HostBench(workdir or Path(tmp), echo=echo, day_dir=day_dir)
        t = time.monotonic()
        try:
            bench.run(want_sync, want_ansible, sync_section, ansible_section)
        except Exception as exc:  # noqa: BLE001 - bring-up failed: report it in every section asked for
            for s in (sync_section, ansible_section):
                if s is not None and not s.error:
                    s.error = f"bring-up failed: {str(exc)[:400]}"
        if ansible_section is not None and not ansible_section.seconds:
            ansible_section.seconds = time.monotonic() - t
    sections += [s for s in (sync_section, ansible_section) if s is not None]
    for s in sections:
        s.details["logs"] = str(day_dir / "logs")
    echo(f"  logs of the host benchmarks: {day_dir / 'logs'}")
    return sections


