"""inventory/aws_ec2.yml finds the stack's trading host and says how to reach it, against the emulator.

The product inventory is used as is: only the environment points it at the
emulator (AWS_ENDPOINT_URL, set by the ``moto`` fixture).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.ansible.helpers_ansible import ROOT, tool, tool_env

INVENTORY = ROOT / "inventory" / "aws_ec2.yml"


def run_instance(ec2: Any, tags: dict[str, str]) -> str:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    reservation = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    return str(reservation["Instances"][0]["InstanceId"])


def host_tags(stack: str = "simpletrader", name: str | None = "simpletrader-host",
              **extra: str) -> dict[str, str]:
    tags = {"Project": "simpletrader", "Stack": stack, "ManagedBy": "simpletrader-provision",
            "Role": "trading-host", **extra}
    if name is not None:
        tags["Name"] = name
    return tags


def inventory(*args: str, source: Path = INVENTORY, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("ansible-inventory"), "-i", str(source), *args], cwd=ROOT,
                          env=tool_env(**env), capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The product inventory, byte for byte, in a directory of its own.

    inventory/host_vars/ holds git-ignored local overrides (the e2e maps the
    emulator's instance to a test host there); host variables are checked on
    a copy so such an override cannot change what the plugin itself produces.
    """
    path = tmp_path / INVENTORY.name
    shutil.copyfile(INVENTORY, path)
    return path


def plain(value: Any) -> Any:
    """Drop ansible-inventory's ``{"__ansible_unsafe": v}`` wrappers."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def listing(source: Path, **env: str) -> dict[str, Any]:
    proc = inventory("--list", source=source, **env)
    assert proc.returncode == 0, proc.stderr
    return dict(plain(json.loads(proc.stdout)))


def test_graph_lists_the_running_trading_host(moto: Any) -> None:
    ec2 = boto3.client("ec2")
    run_instance(ec2, host_tags())
    proc = inventory("--graph")
    assert proc.returncode == 0, proc.stderr
    assert "@trading_hosts:" in proc.stdout
    assert "|--simpletrader-host" in proc.stdout
    assert "Failed to parse" not in proc.stderr


def test_only_this_stacks_trading_hosts_stopped_ones_by_state(moto: Any, copy: Path) -> None:
    ec2 = boto3.client("ec2")
    run_instance(ec2, host_tags())
    run_instance(ec2, host_tags(stack="other", name="other-host"))
    run_instance(ec2, {**host_tags(name="simpletrader-builder"), "Role": "builder"})
    run_instance(ec2, {**host_tags(name="simpletrader-notours"), "Project": "someone-else"})
    stopped = run_instance(ec2, host_tags(name="simpletrader-stopped"))
    ec2.stop_instances(InstanceIds=[stopped])
    gone = run_instance(ec2, host_tags(name="simpletrader-terminated"))
    ec2.terminate_instances(InstanceIds=[gone])
    data = listing(copy)
    # A stopped host is listed, so that site.yml can say it is stopped rather than find no host.
    assert sorted(data["trading_hosts"]["hosts"]) == ["simpletrader-host", "simpletrader-stopped"]
    assert data["state_running"]["hosts"] == ["simpletrader-host"]
    assert data["state_stopped"]["hosts"] == ["simpletrader-stopped"]
    assert sorted(data["_meta"]["hostvars"]) == ["simpletrader-host", "simpletrader-stopped"]


def config_with(tmp_path: Path, **network: Any) -> Path:
    config = yaml.safe_load((ROOT / "stack.yml").read_text())
    config["network"].update(network)
    config["host"]["user"] = "trader"
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_connection_through_session_manager_by_default(moto: Any, copy: Path, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2")
    instance = run_instance(ec2, host_tags())
    hostvars = listing(copy, ST_STACK_CONFIG=str(config_with(tmp_path)))["_meta"]["hostvars"]["simpletrader-host"]
    # access: ssm (the default): the host is its instance id, SSH goes through the tunnel; no address at all.
    assert hostvars["simpletrader_access"] == "ssm"
    assert hostvars["ansible_host"] == instance
    assert hostvars["ansible_ssh_common_args"] == (
        '-o ProxyCommand="inventory/ssm-tunnel --region ap-south-1 %h %p"')
    assert hostvars["ansible_user"] == "trader"  # host.user of the stack config
    assert hostvars["ansible_ssh_private_key_file"] == "simpletrader-key.pem"
    assert hostvars["ec2_instance_id"] == instance
    assert "tags" not in hostvars  # prefixed, so it cannot shadow the play keyword


def test_connection_straight_to_the_address_with_access_ssh(moto: Any, copy: Path, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2")
    instance = run_instance(ec2, host_tags())
    described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    config = config_with(tmp_path, access="ssh", ssh_ingress=["203.0.113.7/32"])
    hostvars = listing(copy, ST_STACK_CONFIG=str(config))["_meta"]["hostvars"]["simpletrader-host"]
    assert hostvars["simpletrader_access"] == "ssh"
    assert hostvars["ansible_host"] == described["PublicIpAddress"]
    assert hostvars["ansible_ssh_common_args"] == ""
    assert hostvars["ansible_user"] == "trader"


def test_only_the_tunnel_command_can_be_swapped(moto: Any, copy: Path) -> None:
    instance = run_instance(boto3.client("ec2"), host_tags())
    hostvars = listing(copy, ST_TUNNEL_COMMAND="/opt/stand-in")["_meta"]["hostvars"]["simpletrader-host"]
    assert hostvars["ansible_host"] == instance
    assert hostvars["ansible_ssh_common_args"] == '-o ProxyCommand="/opt/stand-in --region ap-south-1 %h %p"'


def test_key_file_from_the_environment(moto: Any, copy: Path) -> None:
    run_instance(boto3.client("ec2"), host_tags())
    hostvars = listing(copy, ST_SSH_KEY="/keys/st.pem")["_meta"]["hostvars"]["simpletrader-host"]
    assert hostvars["ansible_ssh_private_key_file"] == "/keys/st.pem"


def test_host_without_a_name_tag_is_named_by_instance_id(moto: Any, copy: Path) -> None:
    instance = run_instance(boto3.client("ec2"), host_tags(name=None))
    assert listing(copy)["trading_hosts"]["hosts"] == [instance]


def test_stack_and_region_come_from_the_stack_config(moto: Any, copy: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "stack.yml").read_text())
    config["stack"]["name"] = "paper"
    config["stack"]["region"] = "eu-west-1"
    path = tmp_path / "paper.yml"
    path.write_text(yaml.safe_dump(config))
    run_instance(boto3.client("ec2", region_name="ap-south-1"), host_tags(stack="paper", name="paper-mumbai"))
    run_instance(boto3.client("ec2", region_name="eu-west-1"), host_tags(stack="paper", name="paper-host"))
    run_instance(boto3.client("ec2", region_name="eu-west-1"), host_tags())
    data = listing(copy, ST_STACK_CONFIG=str(path))
    assert data["trading_hosts"]["hosts"] == ["paper-host"]
    assert data["_meta"]["hostvars"]["paper-host"]["ansible_ssh_private_key_file"] == "paper-key.pem"


@pytest.mark.parametrize("state", ["none", "error"])
def test_no_hosts_is_an_empty_group_not_an_error(moto: Any, state: str) -> None:
    if state == "error":
        run_instance(boto3.client("ec2"), host_tags(stack="other", name="other-host"))
    proc = inventory("--graph")
    assert proc.returncode == 0, proc.stderr
    assert "simpletrader-host" not in proc.stdout


def test_the_inventorys_access_fallback_is_the_schemas_default() -> None:
    """The inventory reads stack.yml itself (before any play); where it falls back, it falls back as the schema."""
    import dataclasses
    import re

    from provision.config import NetworkConfig

    fallbacks = set(re.findall(r"network\.access \| default\('(\w+)', true\)", INVENTORY.read_text()))
    access = next(f for f in dataclasses.fields(NetworkConfig) if f.name == "access")
    assert fallbacks == {access.metadata["default"]}
