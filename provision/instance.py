"""The trading host (EC2 instance) and its Elastic IP.

The AMI comes from the SSM public parameter in ``instance.ami_ssm_parameter``
(Amazon Linux 2023 by default) and must match ``instance.architecture``.
The instance requires IMDSv2, has an encrypted root volume, the instance
profile and the security group; its user data holds no secret (the host
reads secrets from the bucket with its role). ``run_instances`` carries a
client token derived from the launch inputs, so a retried call after a lost
response does not start a second host. A brand-new instance profile may not
be visible to EC2 for a few seconds; that one error is retried, bounded.

An instance is found by its tags (Project, Stack, Role=trading-host) in any
state but terminated. Its AMI is not diffed (a newer AMI behind the public
parameter must not replace a working host); ``down`` then ``up`` picks it up.
"""

from __future__ import annotations

import hashlib
from typing import Any

from provision import tags
from provision.aws import error_code, paginate, retry_on
from provision.engine import Context, Diff, Resource
from provision.errors import ProvisionError
from provision.keypair import key_name

LIVE_STATES = ["pending", "running", "stopping", "stopped"]

USER_DATA = """#!/bin/bash
# SimpleTrader host bootstrap. No secrets here: the host reads them from S3 with its
# instance role. Everything else is configured by Ansible (playbooks/), over SSH.
set -eu
systemctl enable --now amazon-ssm-agent || true
"""

PROFILE_NOT_READY = [
    ("InvalidParameterValue", "iamInstanceProfile"),
    ("InvalidParameterValue", "Invalid IAM Instance Profile"),
]


def host_tags(stack: str) -> dict[str, str]:
    return tags.resource_tags(stack, "host", **{tags.ROLE_KEY: tags.HOST_ROLE_VALUE})


def find_instance(ctx: Context) -> dict[str, Any] | None:
    t = host_tags(ctx.stack)
    want = {k: t[k] for k in (tags.PROJECT_KEY, tags.STACK_KEY, tags.ROLE_KEY)}
    found = [
        i
        for r in paginate(
            ctx.clients.ec2,
            "describe_instances",
            "Reservations",
            Filters=tags.ec2_filters(want) + [{"Name": "instance-state-name", "Values": LIVE_STATES}],
        )
        for i in r["Instances"]
    ]
    if len(found) > 1:
        ids = ", ".join(sorted(i["InstanceId"] for i in found))
        raise ProvisionError(
            f"found {len(found)} trading hosts for stack {ctx.stack} ({ids}); terminate the "
            "extra one(s) by hand, then re-run"
        )
    return found[0] if found else None


def root_volume(ctx: Context, instance: dict[str, Any]) -> tuple[str | None, int | None]:
    """The instance's root EBS volume: its id and size in GiB (None, None when it has none)."""
    root = instance.get("RootDeviceName")
    ids = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", [])
           if m.get("DeviceName") == root and "Ebs" in m]
    if not ids:
        return None, None
    volumes = ctx.clients.ec2.describe_volumes(VolumeIds=ids[:1])["Volumes"]
    return ids[0], (int(volumes[0]["Size"]) if volumes else None)


#: How to replace the host, for the changes that need a new one.
REPLACE = ("(after `python -m provision stop --eod`, then `down` and `up` outside market hours: "
           "the host's disk goes with it)")


class Instance(Resource):
    address = "instance"

    def label(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, "host")

    def find(self, ctx: Context) -> dict[str, Any] | None:
        i = find_instance(ctx)
        if i is None:
            return None
        volume_id, size = root_volume(ctx, i)
        ctx.cache["root_volume_gb"] = size  # for desired(), which sees only the config
        return {
            "id": i["InstanceId"],
            "state": i["State"]["Name"],
            "instance_type": i["InstanceType"],
            "http_tokens": i.get("MetadataOptions", {}).get("HttpTokens"),
            "subnet_id": i.get("SubnetId"),
            "security_groups": sorted(g["GroupId"] for g in i.get("SecurityGroups", [])),
            "key_name": i.get("KeyName"),
            "instance_profile": (i.get("IamInstanceProfile") or {}).get("Arn"),
            "public_ip": i.get("PublicIpAddress"),
            "architecture": i.get("Architecture"),
            "root_volume_gb": size,
            "root_volume_id": volume_id,  # not compared: what update grows
        }

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["instance_id"] = live["id"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {
            "instance_type": ctx.cfg.instance.type,
            "http_tokens": "required",
            "subnet_id": ctx.id("subnet_id"),
            "security_groups": [ctx.id("security_group_id")],
            # By name, which is the stack's own: a key pair made again under it leaves the host as it is.
            "key_name": key_name(ctx.stack),
            "instance_profile": ctx.id("instance_profile_arn"),
            "architecture": ctx.cfg.instance.architecture,
            "root_volume_gb": self._wanted_volume(ctx),
        }

    @staticmethod
    def _wanted_volume(ctx: Context) -> int | None:
        """instance.root_volume_gb, unless the volume is larger already (grown in the console, say: EBS
        cannot shrink it, so that is no change to make) or its size is not known yet (a launch under way)."""
        live = ctx.cache.get("root_volume_gb")  # desired() is asked only of a host find() found
        return None if live is None else max(ctx.cfg.instance.root_volume_gb, live)

    def note(self, ctx: Context, live: dict[str, Any] | None) -> str:
        size = (live or {}).get("root_volume_gb")
        if size is not None and size > ctx.cfg.instance.root_volume_gb:
            return (f"the root volume is {size} GiB, larger than instance.root_volume_gb "
                    f"({ctx.cfg.instance.root_volume_gb}): kept, as EBS volumes do not shrink")
        return ""

    def _image(self, ctx: Context) -> dict[str, Any]:
        param = ctx.cfg.instance.ami_ssm_parameter
        try:
            image_id = ctx.clients.ssm.get_parameter(Name=param)["Parameter"]["Value"]
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                raise ProvisionError(
                    f"instance.ami_ssm_parameter: {param} does not exist in "
                    f"{ctx.cfg.stack.region}; use e.g. /aws/service/ami-amazon-linux-latest/"
                    f"al2023-ami-kernel-default-{ctx.cfg.instance.architecture}"
                ) from None
            raise
        images = ctx.clients.ec2.describe_images(ImageIds=[image_id])["Images"]
        if not images:
            raise ProvisionError(f"AMI {image_id} (from {param}) is not available in {ctx.cfg.stack.region}")
        image = images[0]
        if image.get("Architecture") != ctx.cfg.instance.architecture:
            raise ProvisionError(
                f"AMI {image_id} from {param} is {image.get('Architecture')} but "
                f"instance.architecture is {ctx.cfg.instance.architecture}; fix one of them"
            )
        return dict(image)

    def create(self, ctx: Context) -> None:
        ec2 = ctx.clients.ec2
        image = self._image(ctx)
        subnet, sg = ctx.need("subnet_id"), ctx.need("security_group_id")
        profile, key = ctx.need("instance_profile_arn"), ctx.need("key_name")
        # Every launch parameter that can change is in the token: the same token with other parameters is
        # refused by AWS (IdempotentParameterMismatch).
        token = hashlib.sha256("|".join([
            ctx.stack, subnet, sg, key, profile, image["ImageId"], ctx.cfg.instance.type,
            str(ctx.cfg.instance.root_volume_gb), hashlib.sha256(USER_DATA.encode()).hexdigest(),
        ]).encode()).hexdigest()[:64]
        kwargs: dict[str, Any] = dict(
            ImageId=image["ImageId"],
            InstanceType=ctx.cfg.instance.type,
            MinCount=1,
            MaxCount=1,
            KeyName=key,
            SubnetId=subnet,
            SecurityGroupIds=[sg],
            IamInstanceProfile={"Arn": profile},
            MetadataOptions={
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 1,
            },
            BlockDeviceMappings=[
                {
                    "DeviceName": image.get("RootDeviceName", "/dev/xvda"),
                    "Ebs": {
                        "VolumeSize": ctx.cfg.instance.root_volume_gb,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            UserData=USER_DATA,
            ClientToken=token,
            TagSpecifications=tags.tag_spec("instance", host_tags(ctx.stack))
            + tags.tag_spec("volume", tags.resource_tags(ctx.stack, "host-root")),
        )
        attempts = 8 if ctx.cache.get("new_instance_profile") else 3

        def launch() -> dict[str, Any]:
            result = retry_on(PROFILE_NOT_READY, lambda: ec2.run_instances(**kwargs), attempts=attempts,
                              delay=2.0, sleep=ctx.clients.sleep)
            return dict(result["Instances"][0])

        instance = launch()
        if instance.get("State", {}).get("Name") in ("shutting-down", "terminated"):
            # AWS answered with the host an earlier launch made under this token, terminated since (outside
            # `down`): a token outlives its instance by a day or more. A token of its own for the new host,
            # still the same on a rerun after an interruption.
            kwargs["ClientToken"] = hashlib.sha256(f"{token}|{instance['InstanceId']}".encode()).hexdigest()[:64]
            instance = launch()
        ec2.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]])

    def check_update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        # What needs a new host is said first: stopping the host would not help with it.
        for d in diffs:
            if d.attr in ("subnet_id", "key_name", "instance_profile", "architecture"):
                raise ProvisionError(
                    f"instance: {d.attr} changed ({d.old} -> {d.new}) and needs a new host: replace it "
                    f"{REPLACE}"
                )
        for d in diffs:
            if d.attr == "instance_type" and live["state"] != "stopped":
                raise ProvisionError(
                    f"instance: type {d.old} -> {d.new} needs the host stopped (it is {live['state']}); "
                    f"stop it (aws ec2 stop-instances --instance-ids {live['id']}) outside market hours "
                    "and re-run up"
                )

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        ec2 = ctx.clients.ec2
        for d in diffs:
            if d.attr == "http_tokens":
                ec2.modify_instance_metadata_options(
                    InstanceId=live["id"], HttpTokens="required", HttpEndpoint="enabled"
                )
            elif d.attr == "security_groups":
                ec2.modify_instance_attribute(InstanceId=live["id"], Groups=d.new)
            elif d.attr == "instance_type":
                ec2.modify_instance_attribute(InstanceId=live["id"], InstanceType={"Value": d.new})
            elif d.attr == "root_volume_gb":
                # Online: the volume grows now, the partition and file system at the host's next boot
                # (Amazon Linux's cloud-init grows them at every boot).
                ec2.modify_volume(VolumeId=live["root_volume_id"], Size=d.new)

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ec2 = ctx.clients.ec2
        ec2.terminate_instances(InstanceIds=[live["id"]])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[live["id"]])


def find_address(ctx: Context) -> dict[str, Any] | None:
    found = list(
        paginate(
            ctx.clients.ec2,
            "describe_addresses",
            "Addresses",
            Filters=tags.ec2_filters(tags.resource_tags(ctx.stack, "ip")),
        )
    )
    if len(found) > 1:
        ids = ", ".join(sorted(a["AllocationId"] for a in found))
        raise ProvisionError(
            f"found {len(found)} Elastic IPs tagged for stack {ctx.stack} ({ids}); release the "
            "extra one(s) by hand (keep the one registered with your broker)"
        )
    return found[0] if found else None


def public_address(ctx: Context, inst: dict[str, Any] | None) -> tuple[str | None, bool]:
    """The host's public IPv4 address (the stack's Elastic IP when it has one, else the instance's own)
    and whether it is that static one."""
    addr = find_address(ctx) if ctx.cfg.instance.static_ip else None
    return (addr or {}).get("PublicIp") or (inst or {}).get("PublicIpAddress"), bool(addr)


class ElasticIp(Resource):
    """The static IP the broker whitelists; kept by ``down`` unless ``--release-ip``."""

    address = "eip"
    keep_unless = "release_ip"

    def label(self, ctx: Context) -> str:
        return tags.resource_name(ctx.stack, "ip")

    def enabled(self, ctx: Context) -> bool:
        return ctx.cfg.instance.static_ip

    def find(self, ctx: Context) -> dict[str, Any] | None:
        a = find_address(ctx)
        if a is None:
            return None
        return {
            "allocation_id": a["AllocationId"],
            "public_ip": a["PublicIp"],
            "instance_id": a.get("InstanceId") or None,
            "association_id": a.get("AssociationId") or None,
        }

    def publish(self, ctx: Context, live: dict[str, Any]) -> None:
        ctx.ids["public_ip"] = live["public_ip"]

    def desired(self, ctx: Context) -> dict[str, Any]:
        return {"instance_id": ctx.id("instance_id")}

    def create(self, ctx: Context) -> None:
        ctx.clients.ec2.allocate_address(
            Domain="vpc", TagSpecifications=tags.tag_spec("elastic-ip", tags.resource_tags(ctx.stack, "ip"))
        )

    def update(self, ctx: Context, live: dict[str, Any], diffs: list[Diff]) -> None:
        ctx.clients.ec2.associate_address(
            AllocationId=live["allocation_id"], InstanceId=ctx.need("instance_id"), AllowReassociation=True
        )

    def delete(self, ctx: Context, live: dict[str, Any]) -> None:
        ec2 = ctx.clients.ec2
        if live["association_id"]:
            ec2.disassociate_address(AssociationId=live["association_id"])
        ec2.release_address(AllocationId=live["allocation_id"])


def host_disk_warning(state: str | None) -> str:
    """What goes with the host's disk: said before down asks, and printed with --yes too."""
    text = ("The host's disk is deleted with it: trade data no end of day uploaded (`python -m provision stop "
            "--eod` uploads it, then stops the host) and the job logs eod has not uploaded yet are lost.")
    if state not in ("stopped", "terminated", "shutting-down"):
        text += (f" The host is {state}: if it traded today, run `python -m provision stop --eod` first, or "
                 "today's trades are lost with it.")
    return text
