"""network.access: Session Manager with no inbound rule (the default), or SSH from ssh_ingress (``auto``:
the operator's own address, looked up at plan/up time from a stubbed echo service)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from provhelpers import Runner, base_config, write_config

from provision import config
from provision.errors import ConfigError

STACK = [{"Name": "tag:Stack", "Values": ["simpletrader"]}]


def problems(tmp_path: Path, **network: Any) -> list[str]:
    raw = base_config()
    raw["network"].update(network)
    path = write_config(tmp_path / "stack.yml", raw)
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    return info.value.problems


def test_default_is_session_manager_with_no_ingress() -> None:
    cfg = config.load(Path(__file__).resolve().parents[2] / "stack.yml", env={})
    assert cfg.network.access == "ssm"
    assert cfg.network.ssh_ingress == ()


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ({"access": "vpn"}, "network.access: 'vpn' must be ssm (Session Manager, no open port) or ssh"),
        ({"ssh_ingress": ["203.0.113.7/32"]},
         "network.ssh_ingress: opens port 22, but network.access is ssm (Session Manager, no inbound rule); "
         "set network.access: ssh"),
        ({"access": "ssh"}, "network.ssh_ingress: is empty, but network.access is ssh: nothing could reach the host"),
        ({"access": "ssh", "ssh_ingress": ["0.0.0.0/0"]},
         "network.ssh_ingress[0]: 0.0.0.0/0 would open SSH to the whole internet"),
        ({"access": "ssh", "ssh_ingress": ["auto", "auto"]}, "network.ssh_ingress[1]: auto is listed twice"),
    ],
)
def test_access_problems_name_the_key_and_the_fix(tmp_path: Path, network: dict[str, Any], expected: str) -> None:
    found = problems(tmp_path, **network)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_auto_alone_or_in_a_list(tmp_path: Path) -> None:
    for value in ("auto", ["auto", "198.51.100.0/24"]):
        raw = base_config()
        raw["network"].update(access="ssh", ssh_ingress=value)
        cfg = config.load(write_config(tmp_path / "stack.yml", raw), env={})
        assert cfg.network.auto_ingress


class EchoIp:
    """A stand-in for checkip.amazonaws.com: answers GET with ``address`` (and counts the lookups)."""

    def __init__(self) -> None:
        self.address = "13.233.197.98"
        self.lookups = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                outer.lookups += 1
                body = (outer.address + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> Iterator[EchoIp]:
    stub = EchoIp()
    monkeypatch.setenv("ST_CHECKIP_URL", stub.url)
    yield stub
    stub.server.shutdown()


def ssh_rules() -> list[tuple[int, list[str], list[str]]]:
    group = boto3.client("ec2").describe_security_groups(Filters=STACK)["SecurityGroups"][0]
    return [(p["FromPort"], [r["CidrIp"] for r in p["IpRanges"]], [r.get("Description", "") for r in p["IpRanges"]])
            for p in group["IpPermissions"]]


def use(run: Runner, **network: Any) -> None:
    raw = yaml.safe_load(run.config.read_text())
    raw["network"].update(network)
    write_config(run.config, raw)


def test_auto_ingress_follows_the_operators_address(run: Runner, echo: EchoIp) -> None:
    use(run, access="ssh", ssh_ingress="auto")
    plan = run("plan")
    assert plan.code == 0, plan.err
    assert "network.security_group" in plan.out
    assert run("up", "--yes").code == 0
    assert ssh_rules() == [(22, ["13.233.197.98/32"], ["network.ssh_ingress: auto (address of the operator at up)"])]
    assert run("plan", "--detailed-exitcode").code == 0

    echo.address = "52.66.10.20"  # the operator's address changed (a new DHCP lease, another network)
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2
    assert 'ingress: ["tcp/22 from 13.233.197.98/32"] -> ["tcp/22 from 52.66.10.20/32"]' in plan.out
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert run.last_recorder is not None
    assert [c[2] for c in run.last_recorder.mutating()] == ["RevokeSecurityGroupIngress",
                                                            "AuthorizeSecurityGroupIngress"]
    assert ssh_rules() == [(22, ["52.66.10.20/32"], ["network.ssh_ingress: auto (address of the operator at up)"])]


def test_auto_ingress_lookup_failure_stops_before_any_aws_call(run: Runner, echo: EchoIp) -> None:
    use(run, access="ssh", ssh_ingress=["auto"])
    echo.address = "not an address"
    result = run("up", "--yes")
    assert result.code == 1
    assert run.last_recorder is not None and run.last_recorder.calls == []
    assert "network.ssh_ingress: auto:" in result.err and "list your address as a /32" in result.err
    echo.address = "10.1.2.3"  # a private address: what a proxy in between might answer
    result = run("plan")
    assert result.code == 1 and "not a public address" in result.err


def test_session_manager_mode_opens_nothing_and_listing_addresses_is_not_looked_up(run: Runner, echo: EchoIp) -> None:
    assert run("up", "--yes").code == 0
    assert ssh_rules() == []
    assert echo.lookups == 0
    use(run, access="ssh", ssh_ingress=["203.0.113.7/32"])
    assert run("up", "--yes").code == 0
    assert ssh_rules() == [(22, ["203.0.113.7/32"], ["network.ssh_ingress"])]
    assert echo.lookups == 0  # only `auto` is looked up
    use(run, access="ssm", ssh_ingress=[])
    plan = run("plan")
    assert 'ingress: ["tcp/22 from 203.0.113.7/32"] -> []' in plan.out
    assert run("up", "--yes").code == 0
    assert ssh_rules() == []
