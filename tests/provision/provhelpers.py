"""Helpers for the provision tests: a CLI runner, botocore call recording, emulator state readers.

Everything runs against the shared moto server (``moto`` fixture in
tests/conftest.py); behaviour is injected only through botocore event hooks
on the clients the product's own factory makes.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import yaml
from botocore.awsrequest import AWSResponse

from provision import cli
from provision.aws import Clients

ROOT = Path(__file__).resolve().parents[2]
MUTATING = re.compile(
    r"^(Create|Put|Update|Attach|Associate|Run|Import|Authorize|Tag|Untag|Delete|Modify|Revoke|Allocate|Release|"
    r"Terminate|Add|Remove|Subscribe|Unsubscribe|Detach|Replace|Disassociate|Publish|Start|Stop|Send)"
)


_LOADER = botocore.loaders.create_loader()


def base_config() -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "stack.yml").read_text())
    assert isinstance(raw, dict)
    return raw


class Tracker(io.StringIO):
    """CLI output that also remembers which resource the engine is working on."""

    def __init__(self) -> None:
        super().__init__()
        self.current = "(plan)"

    def write(self, s: str) -> int:
        m = re.match(r"^(\S+): (creating|updating|deleting)", s)
        if m:
            self.current = m.group(1)
        return super().write(s)


@dataclass
class Recorder:
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (resource, service, operation)
    tracker: Tracker | None = None

    def __call__(self, event_name: str, **kwargs: Any) -> None:
        _, service, op = event_name.split(".", 2)
        self.calls.append((self.tracker.current if self.tracker else "", service, op))

    def mutating(self) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if MUTATING.match(c[2])]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Runner:
    """Runs ``python -m provision`` in process with a fresh client factory per run."""

    config: Path
    lambda_dir: Path | None = None
    calendar_builder: Callable[..., dict[str, Any]] | None = None
    hooks: list[tuple[str, Callable[..., Any]]] = field(default_factory=list)
    max_attempts: int = 3
    last_recorder: Recorder | None = None
    options: dict[str, Any] = field(default_factory=dict)  # more engine options, e.g. public_ip_lookup

    def clients(self, region: str = "ap-south-1") -> Clients:
        # A fresh session per run (fresh event hooks), sharing one model loader so the
        # service models are parsed once per test session, not once per run.
        core = botocore.session.get_session()
        core.register_component("data_loader", _LOADER)
        session = boto3.Session(botocore_session=core, region_name=region)
        c = Clients(region, max_attempts=self.max_attempts, session=session, sleep=lambda s: None)
        for event, hook in self.hooks:
            c.events.register(event, hook)
        return c

    def __call__(
        self, *argv: str, hooks: list[tuple[str, Callable[..., Any]]] | None = None, answer: str = "yes"
    ) -> Result:
        out, err = Tracker(), io.StringIO()
        clients = self.clients()
        rec = Recorder(tracker=out)
        clients.events.register("before-call", rec)
        for event, hook in hooks or []:
            clients.events.register(event, hook)
        self.last_recorder = rec
        opts: dict[str, Any] = dict(self.options)
        if self.lambda_dir is not None:
            opts["lambda_dir"] = self.lambda_dir
        if self.calendar_builder is not None:
            opts["calendar_builder"] = self.calendar_builder
        code = cli.main(
            ["--config", str(self.config), *argv],
            clients=clients,
            out=out,
            err=err,
            confirm=lambda q: answer,
            options=opts,
        )
        return Result(code, out.getvalue(), err.getvalue())


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def live_counts() -> dict[str, int]:
    """How many of each resource exist for the stack, read straight from the emulator."""
    ec2 = boto3.client("ec2")
    stack = [{"Name": "tag:Stack", "Values": ["simpletrader"]}]
    instances = [
        i
        for r in ec2.describe_instances(
            Filters=stack
            + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
        )["Reservations"]
        for i in r["Instances"]
    ]
    ssm = boto3.client("ssm")
    params = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/ec2/keypair/"]}]
    )["Parameters"]
    lam = boto3.client("lambda")
    rules = boto3.client("events").list_rules(NamePrefix="simpletrader-")["Rules"]
    iam = boto3.client("iam")
    return {
        "vpc": len(ec2.describe_vpcs(Filters=stack)["Vpcs"]),
        "subnet": len(ec2.describe_subnets(Filters=stack)["Subnets"]),
        "igw": len(ec2.describe_internet_gateways(Filters=stack)["InternetGateways"]),
        "route_table": len(ec2.describe_route_tables(Filters=stack)["RouteTables"]),
        "security_group": len(ec2.describe_security_groups(Filters=stack)["SecurityGroups"]),
        "key_pair": len(ec2.describe_key_pairs(Filters=stack)["KeyPairs"]),
        "key_parameter": len(params),
        "instance": len(instances),
        "eip": len(ec2.describe_addresses(Filters=stack)["Addresses"]),
        "bucket": len(
            [
                b
                for b in boto3.client("s3").list_buckets()["Buckets"]
                if b["Name"] == "simpletrader-working-bucket"
            ]
        ),
        "topic": len(
            [
                t
                for t in boto3.client("sns").list_topics()["Topics"]
                if t["TopicArn"].endswith(":simpletrader-events")
            ]
        ),
        "role": len([r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("simpletrader-")]),
        "profile": len(
            [
                p
                for p in iam.list_instance_profiles()["InstanceProfiles"]
                if p["InstanceProfileName"].startswith("simpletrader-")
            ]
        ),
        "function": len(
            [f for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith("simpletrader-")]
        ),
        "rule": len(rules),
        "document": len(own_documents()),
    }


def role_policies(role: str) -> list[dict[str, Any]]:
    """Every policy document a role carries: its inline policies and the default versions of attached ones."""
    iam = boto3.client("iam")
    documents = [iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                 for name in iam.list_role_policies(RoleName=role)["PolicyNames"]]
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"])
        documents.append(version["PolicyVersion"]["Document"])
    return documents


def own_documents() -> list[str]:
    """The SSM documents this account made (not AWS's own), by name."""
    ssm = boto3.client("ssm")
    found = ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Self"]}])["DocumentIdentifiers"]
    return sorted(d["Name"] for d in found)


FULL = {
    "vpc": 1,
    "subnet": 1,
    "igw": 1,
    "route_table": 1,
    "security_group": 1,
    "key_pair": 1,
    "key_parameter": 1,
    "instance": 1,
    "eip": 1,
    "bucket": 1,
    "topic": 1,
    "role": 3,
    "profile": 1,
    "function": 2,
    "rule": 2,
    "document": 2,
}


class Raw:
    """The body of a canned HTTP response, as botocore reads it."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs: Any) -> Any:
        yield self.body


def respond_once(op: str, status: int, headers: dict[str, str], body: bytes, times: int = 1) -> Any:
    """A ``before-send`` hook answering ``op`` (e.g. ``ssm.GetCommandInvocation``) with a canned response."""
    seen = {"n": 0}

    def hook(event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        if not event_name.endswith(op) or seen["n"] >= times:
            return None
        seen["n"] += 1
        return AWSResponse(request.url, status, headers, Raw(body))  # type: ignore[arg-type]

    hook.seen = seen  # type: ignore[attr-defined]
    return hook


def invocation(status: str, stdout: str) -> Any:
    """A ``before-send`` hook: every GetCommandInvocation ends ``status`` with ``stdout`` (the agent's report)."""
    body = json.dumps({"CommandId": "c", "InstanceId": "i", "Status": status, "StatusDetails": status,
                       "StandardOutputContent": stdout, "StandardErrorContent": ""}).encode()
    return respond_once("ssm.GetCommandInvocation", 200, {}, body, times=99)


def assert_no_orphans() -> None:
    """Everything in the emulator (tagged or not, apart from the account's defaults) is one stack's."""
    ec2 = boto3.client("ec2")
    vpcs = [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")]
    assert len(vpcs) == 1, vpcs
    ours = [{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}]
    default_vpcs = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault")]
    assert len(ec2.describe_subnets(Filters=ours)["Subnets"]) == 1
    assert len(ec2.describe_security_groups(Filters=ours)["SecurityGroups"]) == 2  # the VPC's default + ours
    assert len(ec2.describe_route_tables(Filters=ours)["RouteTables"]) == 2  # main + ours
    gateways = [
        g
        for g in ec2.describe_internet_gateways()["InternetGateways"]
        if not any(a["VpcId"] in default_vpcs for a in g.get("Attachments", []))
    ]
    assert len(gateways) == 1, gateways
    assert len(ec2.describe_key_pairs()["KeyPairs"]) == 1
    live = ["pending", "running", "stopping", "stopped"]
    reservations = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": live}])
    assert sum(len(r["Instances"]) for r in reservations["Reservations"]) == 1
    assert len(ec2.describe_addresses()["Addresses"]) == 1
    params = boto3.client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/ec2/keypair/"]}]
    )["Parameters"]
    assert len(params) == 1, params
    assert len(boto3.client("lambda").list_functions()["Functions"]) == 2
    assert len(boto3.client("events").list_rules()["Rules"]) == 2
    assert own_documents() == ["simpletrader-eod", "simpletrader-sync"]
    assert len(boto3.client("sns").list_topics()["Topics"]) == 1
    assert len(boto3.client("s3").list_buckets()["Buckets"]) == 1
    profiles = boto3.client("iam").list_instance_profiles()["InstanceProfiles"]
    assert len(profiles) == 1, profiles
