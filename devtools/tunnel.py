"""The local world's stand-in for ``inventory/ssm-tunnel`` (SSH's ProxyCommand through Session Manager).

The emulator has no Session Manager, so the local world swaps only the
tunnel's command (``ST_TUNNEL_COMMAND``, read by ``inventory/aws_ec2.yml``)
for this script, with the same arguments (``--region R INSTANCE_ID PORT``).
Like Session Manager it refuses an instance that is not running (asked from
the emulator), and otherwise really carries the SSH connection: it relays
stdin and stdout to the port of the test host that plays the instance,
named in ``ST_TUNNEL_TARGETS`` (``i-0123=10.231.3.2,...``).

Run by path (``python devtools/tunnel.py``), so it needs nothing on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

TARGETS_ENV = "ST_TUNNEL_TARGETS"


def targets(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs}


def instance_state(region: str, instance_id: str) -> str:
    import boto3  # the emulator's endpoint comes from AWS_ENDPOINT_URL, as for every client

    reservations = boto3.client("ec2", region_name=region).describe_instances(InstanceIds=[instance_id])
    return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])


def _pump(read_fd: int, write: socket.socket) -> None:
    """stdin -> the host, until SSH closes its end."""
    while True:
        data = os.read(read_fd, 65536)
        if not data:
            break
        write.sendall(data)
    try:
        write.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def relay(address: str, port: int) -> int:
    sock = socket.create_connection((address, port), timeout=30)
    sock.settimeout(None)
    threading.Thread(target=_pump, args=(sys.stdin.fileno(), sock), daemon=True).start()
    out = sys.stdout.fileno()
    while True:
        data = sock.recv(65536)
        if not data:
            return 0
        os.write(out, data)


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
    return relay(where, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
