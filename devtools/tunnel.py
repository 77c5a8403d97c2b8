"""The local world's stand-in for ``inventory/ssm-tunnel`` (SSH's ProxyCommand through Session Manager).

The emulator has no Session Manager, so the local world swaps only the
tunnel's command (``ST_TUNNEL_COMMAND``, read by ``inventory/aws_ec2.yml``)
for this script, with the same arguments (``--region R INSTANCE_ID PORT``).
Like Session Manager it refuses an instance that is not running (asked from
the emulator), and otherwise really carries the SSH connection: it relays
stdin and stdout to the port of the test host that plays the instance,
named in ``ST_TUNNEL_TARGETS`` (``i-0123=10.231.3.2,...``).

``ST_TUNNEL_DELAY_MS`` (the benchmark's, 0 by default) holds every chunk
that many milliseconds in each direction before passing it on, in order: a
round trip through the stand-in then takes twice that longer, as one through
Session Manager takes longer than one on this machine's veth.

Run by path (``python devtools/tunnel.py``), so it needs nothing on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable

TARGETS_ENV = "ST_TUNNEL_TARGETS"
DELAY_ENV = "ST_TUNNEL_DELAY_MS"


def targets(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs}


def instance_state(region: str, instance_id: str) -> str:
    import boto3  # the emulator's endpoint comes from AWS_ENDPOINT_URL, as for every client

    reservations = boto3.client("ec2", region_name=region).describe_instances(InstanceIds=[instance_id])
    return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def delayed(write: Callable[[bytes], object], delay: float) -> Callable[[bytes], None]:
    """``write``, or with ``delay`` seconds: each chunk passed on that long after it came, in order, by a
    thread of its own (so reading goes on meanwhile). An empty chunk is the end, passed on the same way."""
    if delay <= 0:
        return write  # type: ignore[return-value]
    pending: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def pass_on() -> None:
        while True:
            due, data = pending.get()
            time.sleep(max(0.0, due - time.monotonic()))
            write(data)
            if not data:
                return

    threading.Thread(target=pass_on, daemon=True).start()
    return lambda data: pending.put((time.monotonic() + delay, data))


def _pump(read_fd: int, send: Callable[[bytes], object]) -> None:
    """stdin -> the host, until SSH closes its end (an empty chunk)."""
    while True:
        data = os.read(read_fd, 65536)
        send(data)
        if not data:
            break


def relay(address: str, port: int, delay: float = 0.0) -> int:
    sock = socket.create_connection((address, port), timeout=30)
    sock.settimeout(None)
    to_host = delayed(lambda data: sock.sendall(data) if data else _shutdown(sock), delay)
    threading.Thread(target=_pump, args=(sys.stdin.fileno(), to_host), daemon=True).start()
    out = sys.stdout.fileno()
    ended = threading.Event()
    to_ssh = delayed(lambda data: os.write(out, data) if data else ended.set(), delay)
    while True:
        data = sock.recv(65536)
        to_ssh(data)
        if not data:
            ended.wait()
            return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="devtools/tunnel.py", description=__doc__.split("\n")[0])
    p.add_argument("--region", required=True)
    p.add_argument("instance_id")
    p.add_argument("port", type=int, nargs="?", default=22)
    args = p.parse_args(argv)
    where = targets(os.environ.get(TARGETS_ENV, "")).get(args.instance_id)
    if where is None:
        print(f"tunnel stand-in: no test host plays {args.instance_id} ({TARGETS_ENV})", file=sys.stderr)
        return 1
    state = instance_state(args.region, args.instance_id)
    if state != "running":
        # What the real tunnel says when Session Manager answers TargetNotConnected for a stopped host.
        print(f"error: host {args.instance_id} is {state}: start it with `python -m provision start "
              "--wait-ready`, then connect again", file=sys.stderr)
        return 1
    return relay(where, args.port, float(os.environ.get(DELAY_ENV) or 0) / 1000)


if __name__ == "__main__":
    raise SystemExit(main())
