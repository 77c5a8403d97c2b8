"""Drift and config changes: plan shows exactly what differs, up fixes only that."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import yaml
from provhelpers import ROOT, Runner

STACK = [{"Name": "tag:Stack", "Values": ["simpletrader"]}]


def security_group() -> dict:
    return boto3.client("ec2").describe_security_groups(Filters=STACK)["SecurityGroups"][0]


def edit_config(path: Path, **changes: object) -> None:
    raw = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_ssh_opened_to_the_world_out_of_band_is_shown_and_removed(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    sg = security_group()
    boto3.client("ec2").authorize_security_group_ingress(
        GroupId=sg["GroupId"],
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2
    assert "  ~ network.security_group (simpletrader-host)" in plan.out
    assert 'ingress: ["tcp/22 from 0.0.0.0/0"] -> []' in plan.out
    assert plan.out.strip().endswith("Plan: 0 to add, 1 to change, 0 to destroy.")
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert run.last_recorder is not None
    assert [c[2] for c in run.last_recorder.mutating()] == ["RevokeSecurityGroupIngress"]
    assert security_group()["IpPermissions"] == []
    assert run("plan", "--detailed-exitcode").code == 0


def test_ssh_ingress_from_config_only_from_listed_cidrs(run: Runner) -> None:
    edit_config(run.config, network__access="ssh", network__ssh_ingress=["203.0.113.7/32"])
    assert run("up", "--yes").code == 0
    perms = security_group()["IpPermissions"]
    assert [(p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in perms] == [
        (22, 22, ["203.0.113.7/32"])
    ]
    edit_config(run.config, network__ssh_ingress=["198.51.100.0/24"])
    plan = run("plan")
    assert 'ingress: ["tcp/22 from 203.0.113.7/32"] -> ["tcp/22 from 198.51.100.0/24"]' in plan.out
    assert run("up", "--yes").code == 0
    perms = security_group()["IpPermissions"]
    assert [r["CidrIp"] for p in perms for r in p["IpRanges"]] == ["198.51.100.0/24"]


def test_changed_lambda_source_updates_only_the_code(run: Runner, tmp_path: Path) -> None:
    lambda_dir = tmp_path / "lambda"
    shutil.copytree(ROOT / "lambda", lambda_dir, ignore=shutil.ignore_patterns("__pycache__"))
    run.lambda_dir = lambda_dir
    assert run("up", "--yes").code == 0
    lam = boto3.client("lambda")
    before = lam.get_function_configuration(FunctionName="simpletrader-start")["CodeSha256"]
    (lambda_dir / "__pycache__").mkdir(exist_ok=True)
    (lambda_dir / "__pycache__" / "junk.pyc").write_bytes(b"x")
    (lambda_dir / "test_local.py").write_text("def test_x(): pass\n")
    assert run("plan", "--detailed-exitcode").code == 0  # caches and tests are not part of the package
    with (lambda_dir / "start.py").open("a") as fh:
        fh.write("\n# a change\n")
    plan = run("plan")
    assert "~ lambda.start (simpletrader-start)" in plan.out
    assert "~ lambda.stop (simpletrader-stop)" in plan.out  # one zip for both
    assert "code_sha256: " in plan.out
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in plan.out
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert run.last_recorder is not None
    assert sorted(c[2] for c in run.last_recorder.mutating()) == ["UpdateFunctionCode", "UpdateFunctionCode"]
    assert lam.get_function_configuration(FunctionName="simpletrader-start")["CodeSha256"] != before


def test_schedule_change_moves_the_rule_across_midnight(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    raw = yaml.safe_load(run.config.read_text())
    raw["schedule"]["start"] = "04:00"  # 22:30 UTC the day before
    raw["cron_jobs"] = []
    run.config.write_text(yaml.safe_dump(raw, sort_keys=False))
    plan = run("plan")
    assert "~ schedule.start (simpletrader-start)" in plan.out
    assert 'schedule: "cron(15 3 ? * MON-FRI *)" -> "cron(30 22 ? * SUN-THU *)"' in plan.out
    assert run("up", "--yes").code == 0
    rule = boto3.client("events").describe_rule(Name="simpletrader-start")
    assert rule["ScheduleExpression"] == "cron(30 22 ? * SUN-THU *)"
    assert run("plan", "--detailed-exitcode").code == 0


def test_instance_type_change_needs_the_host_stopped(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    edit_config(run.config, instance__type="t3.medium")
    plan = run("plan")
    assert '~ instance (simpletrader-host)\n      instance_type: "t3.small" -> "t3.medium"' in plan.out
    refused = run("up", "--yes")
    assert refused.code == 1
    assert "needs the host stopped" in refused.err and "Traceback" not in refused.err
    ec2 = boto3.client("ec2")
    reservations = ec2.describe_instances(Filters=STACK)["Reservations"]
    iid = [i for r in reservations for i in r["Instances"]][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid])
    assert run("up", "--yes").code == 0
    host = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert host["InstanceType"] == "t3.medium"
    assert run("plan", "--detailed-exitcode").code == 0


def test_without_static_ip_there_is_no_elastic_ip(run: Runner) -> None:
    edit_config(run.config, instance__static_ip=False)
    assert run("up", "--yes").code == 0
    assert boto3.client("ec2").describe_addresses(Filters=STACK)["Addresses"] == []
    assert run("plan", "--detailed-exitcode").code == 0


def test_lambda_retry_attempts_set_and_drift_repaired(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    lam = boto3.client("lambda")
    assert lam.get_function_event_invoke_config(FunctionName="simpletrader-start")["MaximumRetryAttempts"] == 1
    assert lam.get_function_event_invoke_config(FunctionName="simpletrader-stop")["MaximumRetryAttempts"] == 0
    # Drift: the setting removed out of band (Lambda's default of 2 retries again). moto keeps the
    # first of several puts, so removal is the drift it can show.
    lam.delete_function_event_invoke_config(FunctionName="simpletrader-stop")
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2
    assert "~ lambda.stop (simpletrader-stop)" in plan.out
    assert "retries: 2 -> 0" in plan.out
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert run.last_recorder is not None
    assert [c[2] for c in run.last_recorder.mutating()] == ["PutFunctionEventInvokeConfig"]
    assert lam.get_function_event_invoke_config(FunctionName="simpletrader-stop")["MaximumRetryAttempts"] == 0


def root_volume_size() -> int:
    ec2 = boto3.client("ec2")
    host = [i for r in ec2.describe_instances(Filters=STACK)["Reservations"] for i in r["Instances"]][0]
    [volume_id] = [m["Ebs"]["VolumeId"] for m in host["BlockDeviceMappings"]
                   if m["DeviceName"] == host["RootDeviceName"]]
    return int(ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"])


def test_a_larger_root_volume_is_planned_and_grown_a_smaller_one_left_as_it_is(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    before = root_volume_size()
    edit_config(run.config, instance__root_volume_gb=before + 48)
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 2
    assert f'~ instance (simpletrader-host)\n      root_volume_gb: {before} -> {before + 48}' in plan.out
    assert run("up", "--yes").code == 0
    assert root_volume_size() == before + 48
    assert run("plan", "--detailed-exitcode").code == 0

    edit_config(run.config, instance__root_volume_gb=before)  # EBS volumes do not shrink: no change to make
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 0
    assert f"the root volume is {before + 48} GiB, larger than instance.root_volume_gb ({before})" in plan.out
    assert root_volume_size() == before + 48


def test_an_architecture_change_needs_a_new_host_and_changes_nothing(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    edit_config(run.config, instance__architecture="arm64", instance__type="t4g.small",
                instance__ami_ssm_parameter="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
    plan = run("plan")
    assert 'architecture: "x86_64" -> "arm64"' in plan.out
    refused = run("up", "--yes")
    assert refused.code == 1
    assert 'instance: architecture changed (x86_64 -> arm64) and needs a new host' in refused.err
    assert 'cannot be applied in place: instance: architecture changed' in plan.out
    assert run.last_recorder is not None and not run.last_recorder.mutating()


def test_a_change_that_cannot_be_made_in_place_stops_up_before_anything_changes(run: Runner) -> None:
    """A new VPC CIDR with a bucket change beside it: plan says which cannot be applied, up changes neither."""
    assert run("up", "--yes").code == 0
    s3 = boto3.client("s3")
    rules_before = s3.get_bucket_lifecycle_configuration(Bucket="simpletrader-working-bucket")["Rules"]
    edit_config(run.config, network__vpc_cidr="10.43.0.0/16", network__subnet_cidr="10.43.1.0/24",
                bucket__noncurrent_version_days=7)
    plan = run("plan")
    assert plan.code == 0
    assert "# cannot be applied in place: network.vpc: cidr cannot change in place" in plan.out
    up = run("up", "--yes")
    assert up.code == 1 and "Traceback" not in up.err
    assert "network.vpc: cidr cannot change in place" in up.err and "Nothing was changed." in up.err
    assert "down --yes" not in up.err  # the advice keeps down's own confirmation
    assert run.last_recorder is not None and not run.last_recorder.mutating()
    assert s3.get_bucket_lifecycle_configuration(Bucket="simpletrader-working-bucket")["Rules"] == rules_before


def test_a_root_volume_grown_in_the_console_is_kept_and_said_so(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    ec2 = boto3.client("ec2")
    host = [i for r in ec2.describe_instances(Filters=STACK)["Reservations"] for i in r["Instances"]][0]
    [volume_id] = [m["Ebs"]["VolumeId"] for m in host["BlockDeviceMappings"]
                   if m["DeviceName"] == host["RootDeviceName"]]
    ec2.modify_volume(VolumeId=volume_id, Size=root_volume_size() + 14)
    plan = run("plan", "--detailed-exitcode")
    assert plan.code == 0  # nothing to change: EBS cannot shrink it, and up must not be blocked by it
    assert "larger than instance.root_volume_gb" in plan.out and "kept, as EBS volumes do not shrink" in plan.out


def test_an_instance_profile_deleted_by_hand_is_made_again_without_replacing_the_host(run: Runner) -> None:
    assert run("up", "--yes").code == 0
    iam = boto3.client("iam")
    iam.remove_role_from_instance_profile(InstanceProfileName="simpletrader-instance", RoleName="simpletrader-instance")
    iam.delete_instance_profile(InstanceProfileName="simpletrader-instance")
    plan = run("plan")
    assert "cannot be applied in place" not in plan.out  # the profile's ARN is known only after apply
    up = run("up", "--yes")
    assert up.code == 0, up.err
    assert run("plan", "--detailed-exitcode").code == 0
