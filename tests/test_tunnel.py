"""The tunnel stand-in's relay (devtools/tunnel.py) against a local echo server: bytes in order, and the delay.

The whole path (the inventory's ProxyCommand, a stopped instance refused)
runs in the trading-day e2e and the access tests; here only the relay, which
the benchmark also runs with ST_TUNNEL_DELAY_MS to stand for Session
Manager's longer round trips.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def relay(port: int, delay: float) -> subprocess.Popen[bytes]:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from devtools.tunnel import relay; "
            f"raise SystemExit(relay('127.0.0.1', {port}, {delay}))")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def read_exactly(proc: subprocess.Popen[bytes], size: int) -> bytes:
    assert proc.stdout is not None
    got = b""
    while len(got) < size:
        chunk = proc.stdout.read1(size - len(got))  # type: ignore[attr-defined]
        assert chunk, f"the relay ended after {len(got)} of {size} bytes"
        got += chunk
    return got


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_the_relay_carries_every_byte_in_order_and_ends_when_ssh_closes(echo_port: int, delay: float) -> None:
    proc = relay(echo_port, delay)
    assert proc.stdin is not None
    payload = bytes(range(256)) * 8192  # 2 MiB, many chunks each way
    writer = threading.Thread(target=lambda: (proc.stdin.write(payload), proc.stdin.close()))  # type: ignore[union-attr]
    writer.start()
    assert read_exactly(proc, len(payload)) == payload
    writer.join(timeout=30)
    assert proc.wait(timeout=30) == 0  # SSH's end closed, the host's followed: the relay exits


def test_a_delay_holds_each_round_trip_twice_as_long(echo_port: int) -> None:
    proc = relay(echo_port, 0.05)
    assert proc.stdin is not None
    try:
        for i in range(3):
            started = time.monotonic()
            proc.stdin.write(b"ping %d\n" % i)
            proc.stdin.flush()
            assert read_exactly(proc, 7) == b"ping %d\n" % i
            assert time.monotonic() - started >= 0.1  # 50 ms each way, at least
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
