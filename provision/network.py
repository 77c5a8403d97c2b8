"""Network: VPC, public subnet, internet gateway, route table, security group.

The security group has no inbound rule with ``network.access: ssm`` (the
default: SSH goes through Session Manager). With ``access: ssh`` it allows TCP
22 from exactly ``network.ssh_ingress`` (``auto``: the operator's current
public address, so a changed address is a diff and ``up`` replaces the rule).
Any other inbound rule, e.g. one added by hand, is drift that ``plan`` shows
and ``up`` removes. Outbound stays open: the host needs package mirrors, S3,
SSM and the broker's API.
"""

from __future__ import annotations

from typing import Any

from provision import publicip, tags
from provision.aws import error_code, paginate, retry_on
from provision.checks import AUTO_INGRESS
from provision.engine import UNKNOWN, Context, Diff, Resource
from provision.errors import ProvisionError


def _find_one(
    ctx: Context,
    operation: str,
    key: str,
    resource: str,
    id_key: str,
    extra_filters: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    want = tags.resource_tags(ctx.stack, resource)
    items = list(
        paginate(ctx.clients.ec2, operation, key, Filters=tags.ec2_filters(want) + (extra_filters or []))
    )
    if len(items) > 1:
        ids = ", ".join(sorted(i[id_key] for i in items))
        raise ProvisionError(
            f"found {len(items)} resources tagged Name={want['Name']} ({ids}); "
            "delete the extra ones by hand, then re-run"
        )
    return items[0] if items else None


def _after_dependents(ctx: Context, call: Any) -> Any:
    """Run a delete that AWS refuses with DependencyViolation until a just-terminated host's network
    interface is gone (that can lag the instance_terminated waiter by a little); bounded."""
    return retry_on([("DependencyViolation", "")], call, attempts=12, delay=2.5, sleep=ctx.clients.sleep)


def _immutable(address: str, attr: str, old: Any, new: Any) -> None:
    raise ProvisionError(
        f"{address}: {attr} cannot change in place ({old} -> {new}); restore the old value, or replace the "
        "stack (after `python -m provision stop --eod`, then `down` and `up` outside market hours: the host's "
        "disk goes with it)"
    )


class Vpc(Resource):
    address = "network.vpc"

    def label(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, "vpc")

    def find(self, ctx: Context) -> dict[str, Any] | None:
        vpc = _find_one(ctx, "describe_vpcs", "Vpcs", "vpc", "VpcId")
        if vpc is None:
            return None
        ec2 = ctx.clients.ec2
        hostnames = ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")
        return {
            "id": vpc["VpcId"],
            "cidr": vpc["CidrBlock"],
            "dns_hostnames": hostnames["EnableDnsHostnames"]["Value"],
        }

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["vpc_id"] = live["id"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {"cidr": ctx.cfg.network.vpc_cidr, "dns_hostnames": True}

    def create(self, ctx: Context) -> None:
        ec2 = ctx.clients.ec2
        vpc = ec2.create_vpc(
            CidrBlock=ctx.cfg.network.vpc_cidr,
            TagSpecifications=tags.tag_spec("vpc", tags.resource_tags(ctx.stack, "vpc")),
        )["Vpc"]
        ec2.get_waiter("vpc_available").wait(VpcIds=[vpc["VpcId"]])

    def check_update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        for d in diffs:
            if d.attr == "cidr":
                _immutable(self.address, "cidr", d.old, d.new)

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        for d in diffs:
            if d.attr == "dns_hostnames":
                ctx.clients.ec2.modify_vpc_attribute(VpcId=live["id"], EnableDnsHostnames={"Value": d.new})

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        _after_dependents(ctx, lambda: ctx.clients.ec2.delete_vpc(VpcId=live["id"]))


class Subnet(Resource):
    address = "network.subnet"

    def label(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, "subnet")

    def find(self, ctx: Context) -> dict[str, Any] | None:
        s = _find_one(ctx, "describe_subnets", "Subnets", "subnet", "SubnetId")
        if s is None:
            return None
        return {
            "id": s["SubnetId"],
            "cidr": s["CidrBlock"],
            "vpc_id": s["VpcId"],
            "availability_zone": s["AvailabilityZone"],
            "public_ip_on_launch": s["MapPublicIpOnLaunch"],
        }

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["subnet_id"] = live["id"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        # A public address on launch lets a host without an Elastic IP reach SSM and S3.
        return {"cidr": ctx.cfg.network.subnet_cidr, "vpc_id": ctx.id("vpc_id"), "public_ip_on_launch": True}

    def _zone(self, ctx: Context) -> str:
        """The first zone (by name) that offers the instance type, so the launch cannot fail on capacity."""
        offers = paginate(
            ctx.clients.ec2,
            "describe_instance_type_offerings",
            "InstanceTypeOfferings",
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [ctx.cfg.instance.type]}],
        )
        zones = sorted(o["Location"] for o in offers)
        if not zones:
            raise ProvisionError(
                f"instance.type {ctx.cfg.instance.type} is not offered in any zone of "
                f"{ctx.cfg.stack.region}; pick another type"
            )
        return zones[0]

    def create(self, ctx: Context) -> None:
        ec2 = ctx.clients.ec2
        s = ec2.create_subnet(
            VpcId=ctx.need("vpc_id"),
            CidrBlock=ctx.cfg.network.subnet_cidr,
            AvailabilityZone=self._zone(ctx),
            TagSpecifications=tags.tag_spec("subnet", tags.resource_tags(ctx.stack, "subnet")),
        )["Subnet"]
        ec2.get_waiter("subnet_available").wait(SubnetIds=[s["SubnetId"]])

    def check_update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        for d in diffs:
            if d.attr in ("cidr", "vpc_id"):
                _immutable(self.address, d.attr, d.old, d.new)

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        for d in diffs:
            if d.attr == "public_ip_on_launch":
                ctx.clients.ec2.modify_subnet_attribute(
                    SubnetId=live["id"], MapPublicIpOnLaunch={"Value": d.new}
                )

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        _after_dependents(ctx, lambda: ctx.clients.ec2.delete_subnet(SubnetId=live["id"]))


class InternetGateway(Resource):
    address = "network.internet_gateway"

    def label(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, "igw")

    def find(self, ctx: Context) -> dict[str, Any] | None:
        g = _find_one(ctx, "describe_internet_gateways", "InternetGateways", "igw", "InternetGatewayId")
        if g is None:
            return None
        attached = sorted(
            a["VpcId"] for a in g.get("Attachments", []) if a.get("State") in ("available", "attached")
        )
        return {"id": g["InternetGatewayId"], "attached_to": attached}

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["igw_id"] = live["id"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {"attached_to": [ctx.id("vpc_id")]}

    def create(self, ctx: Context) -> None:
        ctx.clients.ec2.create_internet_gateway(
            TagSpecifications=tags.tag_spec("internet-gateway", tags.resource_tags(ctx.stack, "igw"))
        )

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        ec2 = ctx.clients.ec2
        want = ctx.need("vpc_id")
        for vpc in live["attached_to"]:
            if vpc != want:
                ec2.detach_internet_gateway(InternetGatewayId=live["id"], VpcId=vpc)
        if want not in live["attached_to"]:
            ec2.attach_internet_gateway(InternetGatewayId=live["id"], VpcId=want)

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ec2 = ctx.clients.ec2
        gw = live["id"]
        for vpc in live["attached_to"]:
            _after_dependents(ctx, lambda v=vpc: ec2.detach_internet_gateway(InternetGatewayId=gw, VpcId=v))
        ec2.delete_internet_gateway(InternetGatewayId=live["id"])


class RouteTable(Resource):
    address = "network.route_table"

    def label(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, "public")

    def find(self, ctx: Context) -> dict[str, Any] | None:
        t = _find_one(ctx, "describe_route_tables", "RouteTables", "public", "RouteTableId")
        if t is None:
            return None
        default = [
            r.get("GatewayId") for r in t.get("Routes", []) if r.get("DestinationCidrBlock") == "0.0.0.0/0"
        ]
        assoc = {
            a["SubnetId"]: a["RouteTableAssociationId"]
            for a in t.get("Associations", [])
            if a.get("SubnetId")
        }
        return {
            "id": t["RouteTableId"],
            "vpc_id": t["VpcId"],
            "default_route": default[0] if default else None,
            "subnets": sorted(assoc),
            "associations": assoc,
        }

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {
            "vpc_id": ctx.id("vpc_id"),
            "default_route": ctx.id("igw_id"),
            "subnets": [ctx.id("subnet_id")],
        }

    def create(self, ctx: Context) -> None:
        ctx.clients.ec2.create_route_table(
            VpcId=ctx.need("vpc_id"),
            TagSpecifications=tags.tag_spec("route-table", tags.resource_tags(ctx.stack, "public")),
        )

    def check_update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        for d in diffs:
            if d.attr == "vpc_id":
                _immutable(self.address, "vpc_id", d.old, d.new)

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        ec2 = ctx.clients.ec2
        igw, subnet = ctx.need("igw_id"), ctx.need("subnet_id")
        if live["default_route"] is None:
            ec2.create_route(RouteTableId=live["id"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        elif live["default_route"] != igw:
            ec2.replace_route(RouteTableId=live["id"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        for sub, assoc in live["associations"].items():
            if sub != subnet:
                ec2.disassociate_route_table(AssociationId=assoc)
        if subnet not in live["associations"]:
            ec2.associate_route_table(RouteTableId=live["id"], SubnetId=subnet)

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ec2 = ctx.clients.ec2
        for assoc in live["associations"].values():
            ec2.disassociate_route_table(AssociationId=assoc)
        ec2.delete_route_table(RouteTableId=live["id"])


def ssh_ingress(ctx: Context) -> tuple[str, ...]:
    """The CIDRs port 22 is open to: none with ``access: ssm``; ``auto`` becomes the operator's
    current public address, looked up once per run (:mod:`provision.publicip`)."""
    if "ssh_ingress" not in ctx.cache:
        net = ctx.cfg.network
        cidrs = list(net.ssh_ingress) if net.access == "ssh" else []
        if AUTO_INGRESS in cidrs:
            lookup = ctx.options.get("public_ip_lookup") or publicip.lookup
            here = lookup()
            cidrs = [here if c == AUTO_INGRESS else c for c in cidrs]
            cidrs = list(dict.fromkeys(cidrs))
        ctx.cache["ssh_ingress"] = tuple(cidrs)
    return tuple(ctx.cache["ssh_ingress"])


def _rule_description(ctx: Context, cidr: str) -> str:
    listed = cidr in ctx.cfg.network.ssh_ingress
    return "network.ssh_ingress" if listed else "network.ssh_ingress: auto (address of the operator at up)"


def _rule_key(rule: dict[str, Any]) -> str:
    proto = rule.get("IpProtocol", "-1")
    if proto == "-1":
        ports = "all"
    else:
        lo, hi = rule.get("FromPort"), rule.get("ToPort")
        ports = f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}"
    source = (
        rule.get("CidrIpv4")
        or rule.get("CidrIpv6")
        or rule.get("PrefixListId")
        or (rule.get("ReferencedGroupInfo") or {}).get("GroupId")
        or "?"
    )
    return f"{ports} from {source}"


class SecurityGroup(Resource):
    address = "network.security_group"

    def label(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, "host")

    def find(self, ctx: Context) -> dict[str, Any] | None:
        g = _find_one(ctx, "describe_security_groups", "SecurityGroups", "host", "GroupId")
        if g is None:
            return None
        rules = list(
            paginate(
                ctx.clients.ec2,
                "describe_security_group_rules",
                "SecurityGroupRules",
                Filters=[{"Name": "group-id", "Values": [g["GroupId"]]}],
            )
        )
        ingress = {_rule_key(r): r["SecurityGroupRuleId"] for r in rules if not r.get("IsEgress")}
        return {"id": g["GroupId"], "vpc_id": g["VpcId"], "ingress": sorted(ingress), "rule_ids": ingress}

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["security_group_id"] = live["id"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {
            "vpc_id": ctx.id("vpc_id"),
            "ingress": sorted(f"tcp/22 from {cidr}" for cidr in ssh_ingress(ctx)),
        }

    def create(self, ctx: Context) -> None:
        name = tags.resource_name(ctx.stack, "host")
        try:
            ctx.clients.ec2.create_security_group(
                GroupName=name,
                VpcId=ctx.need("vpc_id"),
                Description=f"SimpleTrader host of stack {ctx.stack}: SSH only from network.ssh_ingress",
                TagSpecifications=tags.tag_spec("security-group", tags.resource_tags(ctx.stack, "host")),
            )
        except Exception as exc:
            if error_code(exc) == "InvalidGroup.Duplicate":
                raise ProvisionError(
                    f"a security group named {name} exists in the VPC without this stack's "
                    "tags; delete or tag it, then re-run"
                ) from None
            raise

    def check_update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        for d in diffs:
            if d.attr == "vpc_id":
                _immutable(self.address, "vpc_id", d.old, d.new)

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        ec2 = ctx.clients.ec2
        cidrs = ssh_ingress(ctx)
        want = set(f"tcp/22 from {cidr}" for cidr in cidrs)
        extra = [rid for key, rid in live["rule_ids"].items() if key not in want]
        if extra:
            ec2.revoke_security_group_ingress(GroupId=live["id"], SecurityGroupRuleIds=sorted(extra))
        missing = sorted(c for c in cidrs if f"tcp/22 from {c}" not in live["rule_ids"])
        if missing:
            ec2.authorize_security_group_ingress(
                GroupId=live["id"],
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 22,
                        "ToPort": 22,
                        "IpRanges": [{"CidrIp": c, "Description": _rule_description(ctx, c)} for c in missing],
                    }
                ],
            )

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        _after_dependents(ctx, lambda: ctx.clients.ec2.delete_security_group(GroupId=live["id"]))


RESOURCES: list[Resource] = [Vpc(), Subnet(), InternetGateway(), RouteTable(), SecurityGroup()]

__all__ = ["RESOURCES", "UNKNOWN"]
