"""moto_server, with one correction to how it evaluates policy conditions, one SSM read it lacks, and its AWS
managed policies read once instead of at every reset.

moto 5.2 ignores condition operators it does not implement (everything but
StringEquals), so a statement such as the bucket's TLS-only guard

    {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}

applies unconditionally there and denies every request, which AWS never does.
AWS's rule is that a condition on a key absent from the request context does
not match (unless the operator ends in IfExists). moto passes no context keys
for S3 requests, so with this correction such a Deny never matches. This is
the one place the emulator is corrected; product code never sees it.

moto has no DescribeInstanceInformation (where an SSM agent shows that it has
registered). Here every running EC2 instance is reported Online, as an agent
that registers the moment its host runs: in the local world the agent is
played (docs/TESTING.md), and ``provision start --wait-ready`` asks this.

With ``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` moto builds every AWS managed
policy (about 1,600) whenever it makes an IAM backend: at each reset, that is
before each test that uses the ``moto`` fixture, where it parsed its 4 MB of
policy JSON anew (about a second of CPU each time). Here that JSON is parsed once per
server and each policy's document serialised once; every reset still gets
new policy objects (fresh ids, no attachments), built as moto's own
``AWSManagedPolicy.from_data`` builds them.

Run as ``python -m devtools.moto_server -H HOST -p PORT`` (moto_server's options).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2 import ec2_backends
from moto.iam import access_control
from moto.iam import models as iam_models
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.ssm.responses import SimpleSystemManagerResponse

_original = access_control.IAMPolicyStatement.is_action_permitted


def is_action_permitted(self: Any, action: str, resource: str = "*", principal: str | None = None,
                        incoming_condition_values: dict[str, str] | None = None) -> Any:
    """A statement whose condition names a key absent from the request does not apply."""
    for operator, pairs in (self._statement.get("Condition") or {}).items():
        for key in pairs:
            if key not in (incoming_condition_values or {}) and not operator.endswith("IfExists"):
                return access_control.PermissionResult.NEUTRAL
    return _original(self, action, resource, principal, incoming_condition_values)


access_control.IAMPolicyStatement.is_action_permitted = is_action_permitted  # type: ignore[method-assign]


def describe_instance_information(self: Any) -> ActionResult:
    """Every running instance (optionally only the InstanceIds filter's) as a registered, Online agent."""
    wanted: set[str] = set()
    for f in self._get_param("Filters") or []:
        if f.get("Key") == "InstanceIds":
            wanted.update(f.get("Values") or [])
    ec2 = ec2_backends[self.current_account][self.region]
    found = [
        {"InstanceId": i.id, "PingStatus": "Online", "ResourceType": "EC2Instance", "PlatformType": "Linux"}
        for reservation in ec2.reservations.values()
        for i in reservation.instances
        if i.state == "running" and (not wanted or i.id in wanted)
    ]
    return ActionResult({"InstanceInformationList": found})


SimpleSystemManagerResponse.describe_instance_information = describe_instance_information  # type: ignore[attr-defined]

@functools.cache
def _aws_policy_data() -> tuple[tuple[str, dict[str, Any], str, datetime, datetime], ...]:
    """Each AWS managed policy's name, data, document (as JSON) and dates, parsed once."""
    return tuple((name, data, json.dumps(data.get("Document")), datetime.fromisoformat(data["CreateDate"]),
                  datetime.fromisoformat(data["UpdateDate"]))
                 for name, data in json.loads(aws_managed_policies_data).items())


def init_aws_policies(self: Any) -> list[Any]:
    """moto's ``IAMBackend._init_aws_policies`` (new objects per backend), from the data parsed once."""
    if not iam_models.load_iam_aws_managed_policies():
        return []
    policy: Any = iam_models.AWSManagedPolicy  # typed abstract (CloudFormation hooks), instantiated by moto too
    return [policy(name, account_id=self.account_id, region=self.region_name,
                   default_version_id=data.get("DefaultVersionId"), path=data.get("Path"),
                   document=document, create_date=created, update_date=updated)
            for name, data, document, created, updated in _aws_policy_data()]


iam_models.IAMBackend._init_aws_policies = init_aws_policies  # type: ignore[method-assign]

if __name__ == "__main__":
    from moto.server import main

    main()
