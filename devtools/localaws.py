"""The local stand-in for AWS: moto in server mode on a free port.

Used by the tests (``tests/conftest.py``), the demo and the benchmarks::

    python -m devtools.localaws start [--bind 0.0.0.0] [--state-dir DIR]
    eval "$(python -m devtools.localaws env)"
    python -m devtools.localaws stop

``start`` runs ``moto_server`` (``devtools/moto_server.py``: moto with a
correction to its policy-condition evaluation) in the background with
``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` and writes its pid and endpoint to the
state directory; ``env`` prints the variables that point boto3, the AWS CLI
and Ansible at it (``AWS_ENDPOINT_URL``, fake credentials, region).

The emulator accepts much that AWS rejects and runs nothing (no SSM agent,
no scheduled rules, no Lambda without Docker); see ``docs/TESTING.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "ap-south-1",
    "AWS_REGION": "ap-south-1",
}
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".state" / "localaws"


def free_port(bind: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((bind, 0))
        return int(s.getsockname()[1])


@dataclass
class MotoServer:
    """A running moto_server process."""

    process: subprocess.Popen[bytes]
    bind: str
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "") else self.bind  # noqa: S104 - a comparison
        return f"http://{host}:{self.port}"

    def endpoint_for(self, address: str) -> str:
        """The endpoint as seen from another address (e.g. a test host's gateway)."""
        return f"http://{address}:{self.port}"

    def env(self, region: str = "ap-south-1") -> dict[str, str]:
        env = dict(FAKE_ENV, AWS_ENDPOINT_URL=self.endpoint)
        env["AWS_DEFAULT_REGION"] = env["AWS_REGION"] = region
        return env

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=30):  # noqa: S310 - our own http endpoint
            pass

    @contextlib.contextmanager
    def iam_enforced(self) -> Iterator[None]:
        """Within the block, the emulator checks every request's signature and IAM policies.

        moto's IAM-auth mode: requests must be signed with keys it issued (an
        IAM user's access key, or credentials from sts AssumeRole), and their
        identity policies are evaluated (actions, and resources where moto
        knows them; see docs/TESTING.md). The fake default credentials are
        refused meanwhile. Off again afterwards, even on error.
        """
        self._reset_auth("0")
        try:
            yield
        finally:
            self._reset_auth("inf")

    def _reset_auth(self, count: str) -> None:
        req = urllib.request.Request(  # noqa: S310 - our own http endpoint
            f"{self.endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
            headers={"Content-Type": "text/plain"})  # a form type would hide the body from moto
        with urllib.request.urlopen(req, timeout=30):  # noqa: S310 - our own http endpoint
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(bind: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None,
          timeout: float = 30.0) -> MotoServer:
    """Start moto_server and wait until it answers."""
    port = port or free_port(bind if bind != "0.0.0.0" else "127.0.0.1")  # noqa: S104 - a comparison
    if log_path is None:
        log_path = DEFAULT_STATE_DIR / f"moto-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true", **FAKE_ENV)
    env.pop("AWS_ENDPOINT_URL", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.moto_server", "-H", bind, "-p", str(port)],
            cwd=str(Path(__file__).resolve().parent.parent),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
    server = MotoServer(proc, bind, port, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/data.json", timeout=2):  # noqa: S310
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto_server did not answer within {timeout:.0f}s; see {log_path}") from None
            time.sleep(0.2)


def _state_file(state_dir: Path) -> Path:
    return state_dir / "server.json"


def _print_env(env: dict[str, str]) -> None:
    for key, value in sorted(env.items()):
        print(f"export {key}={value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.localaws", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start", help="start moto_server in the background")
    p_start.add_argument("--bind", default="127.0.0.1", help="address to bind (0.0.0.0 for test hosts)")
    p_start.add_argument("--port", type=int, default=None)
    sub.add_parser("env", help="print export lines for the running server")
    sub.add_parser("stop", help="stop the server started by 'start'")
    args = parser.parse_args(argv)
    state = _state_file(args.state_dir)

    if args.cmd == "start":
        if state.exists():
            info = json.loads(state.read_text())
            try:
                os.kill(info["pid"], 0)
                print(f"localaws: already running at {info['endpoint']} (pid {info['pid']})", file=sys.stderr)
                return 0
            except ProcessLookupError:
                state.unlink()
        server = start(args.bind, args.port, args.state_dir / "moto.log")
        args.state_dir.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"pid": server.process.pid, "endpoint": server.endpoint,
                                     "port": server.port, "bind": server.bind}))
        print(f"localaws: moto_server at {server.endpoint} (pid {server.process.pid}, log {server.log_path})",
              file=sys.stderr)
        return 0
    if not state.exists():
        print("localaws: not running; start it with 'python -m devtools.localaws start'", file=sys.stderr)
        return 1
    info = json.loads(state.read_text())
    if args.cmd == "env":
        _print_env(dict(FAKE_ENV, AWS_ENDPOINT_URL=info["endpoint"]))
        return 0
    try:
        os.killpg(info["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    state.unlink()
    print(f"localaws: stopped (pid {info['pid']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
