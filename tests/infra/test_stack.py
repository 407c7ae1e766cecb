"""The Pulumi program under Pulumi's mocks: what `pulumi up` would create, property by property."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from infra.config import parse
from tests.infra.mocks import Declared, Mocks, run_program


@pytest.fixture(scope="module")
def default_stack() -> tuple[Mocks, dict[str, Any]]:
    return run_program(parse({"region": "us-east-1"}))


@pytest.fixture(scope="module")
def mocks(default_stack: tuple[Mocks, dict[str, Any]]) -> Mocks:
    return default_stack[0]


def alarms_by_name(mocks: Mocks) -> dict[str, Declared]:
    return {alarm.inputs["name"]: alarm for alarm in mocks.of_type("metricAlarm:MetricAlarm")}


def policies(mocks: Mocks) -> dict[str, Declared]:
    return {policy.name: policy for policy in mocks.of_type("autoscaling/policy:Policy")}


# --- alarms and scaling policies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alarm", "threshold", "metric"),
    [
        ("cpu-high", 70, "CPUUtilization"),
        ("gpu-utilization-high", 70, "nvidia_smi_utilization_gpu"),
        ("gpu-memory-high", 60, "nvidia_smi_memory_used"),
        ("queue-high", 50, "bentoml_service_request_in_progress"),
    ],
)
def test_each_signal_scales_out_past_its_threshold(mocks: Mocks, alarm: str, threshold: float, metric: str) -> None:
    declared = alarms_by_name(mocks)[f"elastic-resnet-dev-{alarm}"]
    assert declared.inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert declared.inputs["threshold"] == threshold
    assert declared.inputs["treatMissingData"] == "notBreaching"
    assert (declared.inputs["evaluationPeriods"], declared.inputs["datapointsToAlarm"]) == (3, 2)
    metrics = [q["metric"]["metricName"] for q in declared.inputs["metricQueries"] if "metric" in q]
    assert metric in metrics
    for query in declared.inputs["metricQueries"]:
        if "metric" in query:
            assert query["metric"]["dimensions"] == {"AutoScalingGroupName": "elastic-resnet-dev-gpu"}
    assert sum(1 for q in declared.inputs["metricQueries"] if q.get("returnData")) == 1
    scale_out = policies(mocks)["scaling-out"]
    assert declared.inputs["alarmActions"][0] == f"arn:aws:mock:us-east-1:123456789012:policy/{scale_out.name}"


def test_scale_in_is_one_metric_math_alarm_on_the_busiest_signal(mocks: Mocks) -> None:
    declared = alarms_by_name(mocks)["elastic-resnet-dev-all-signals-low"]
    assert declared.inputs["comparisonOperator"] == "LessThanThreshold"
    assert declared.inputs["threshold"] == 30
    assert declared.inputs["treatMissingData"] == "notBreaching"
    assert (declared.inputs["evaluationPeriods"], declared.inputs["datapointsToAlarm"]) == (15, 15)
    queries = {q["id"]: q for q in declared.inputs["metricQueries"]}
    returned = [q for q in queries.values() if q.get("returnData")]
    assert len(returned) == 1 and returned[0]["expression"] == "MAX([s0_value, s1_value, s2_value, s3_value])"
    # Each signal normalised to the CPU's scale: GPU memory's 60 reads 70, the queue's 50 reads 70.
    assert queries["s0_value"]["expression"] == "s0_cpu"
    assert queries["s2_value"]["expression"] == "(100 * s2_used / s2_total) * 1.16667"
    assert queries["s3_value"]["expression"] == "(IF(s3_instances > 0, s3_inflight / s3_instances, 0)) * 1.4"
    assert declared.inputs["alarmActions"] == [
        f"arn:aws:mock:us-east-1:123456789012:policy/{policies(mocks)['scaling-in'].name}"
    ]


def test_step_policies(mocks: Mocks) -> None:
    out, in_ = policies(mocks)["scaling-out"].inputs, policies(mocks)["scaling-in"].inputs
    assert out["policyType"] == in_["policyType"] == "StepScaling"
    assert out["adjustmentType"] == "PercentChangeInCapacity" and out["minAdjustmentMagnitude"] == 1
    assert out["stepAdjustments"] == [{"metricIntervalLowerBound": "0", "scalingAdjustment": 50}]
    assert out["estimatedInstanceWarmup"] == 180
    assert in_["stepAdjustments"] == [{"metricIntervalUpperBound": "0", "scalingAdjustment": -1}]


def test_thresholds_come_from_config() -> None:
    mocks, _ = run_program(
        parse(
            {"region": "us-east-1", "thresholds": {"cpu_percent": 80, "gpu_memory_percent": 90, "scale_in_below": 20}}
        )
    )
    alarms = alarms_by_name(mocks)
    assert alarms["elastic-resnet-dev-cpu-high"].inputs["threshold"] == 80
    assert alarms["elastic-resnet-dev-gpu-memory-high"].inputs["threshold"] == 90
    assert alarms["elastic-resnet-dev-all-signals-low"].inputs["threshold"] == 20


# --- the fleet ------------------------------------------------------------------------------------------


def test_group_sizes_health_checks_and_rolling_refresh(mocks: Mocks) -> None:
    group = mocks.one("autoscaling/group:Group").inputs
    assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (1, 10, 1)
    assert group["healthCheckType"] == "ELB" and group["healthCheckGracePeriod"] == 300
    assert group["defaultInstanceWarmup"] == 180
    assert group["instanceRefresh"]["strategy"] == "Rolling"
    assert group["instanceRefresh"]["preferences"]["minHealthyPercentage"] == 100
    assert "mixedInstancesPolicy" not in group  # AWS refuses a warm pool with mixed instances or Spot
    assert group["vpcZoneIdentifiers"] == ["network-private-0-id", "network-private-1-id"]


def test_warm_pool_and_lifecycle_hooks(mocks: Mocks) -> None:
    group = mocks.one("autoscaling/group:Group").inputs
    assert group["warmPool"]["poolState"] == "Stopped"
    assert group["warmPool"]["minSize"] == 1
    assert group["warmPool"]["instanceReusePolicy"] == {"reuseOnScaleIn": True}
    hooks = {hook["lifecycleTransition"]: hook for hook in group["initialLifecycleHooks"]}
    launching = hooks["autoscaling:EC2_INSTANCE_LAUNCHING"]
    assert launching["name"] == "wait-for-ready" and launching["defaultResult"] == "ABANDON"
    assert launching["heartbeatTimeout"] >= 600  # covers image pull + model load
    assert "autoscaling:EC2_INSTANCE_TERMINATING" in hooks


def test_launch_template_is_locked_down(mocks: Mocks) -> None:
    template = mocks.one("launchTemplate:LaunchTemplate").inputs
    assert template["imageId"] == "ami-0123456789abcdef0"  # from the DLAMI's SSM parameter
    assert template["instanceType"] == "g4dn.xlarge"
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert "keyName" not in template
    (disk,) = template["blockDeviceMappings"]
    assert disk["ebs"]["encrypted"] == "true" and disk["ebs"]["volumeType"] == "gp3"
    script = base64.b64decode(template["userData"]).decode()
    assert "elastic-resnet-dev:latest" in script and "--gpus all" in script


def test_first_deploy_can_hold_instances_back() -> None:
    mocks, _ = run_program(parse({"region": "us-east-1", "launch_instances": False}))
    group = mocks.one("autoscaling/group:Group").inputs
    assert (group["minSize"], group["desiredCapacity"], group["maxSize"]) == (0, 0, 10)
    assert group["warmPool"]["minSize"] == 0 and group["warmPool"]["maxGroupPreparedCapacity"] == 0


def test_ami_ssm_lookup_can_be_pinned() -> None:
    mocks, _ = run_program(parse({"region": "us-east-1", "ami_id": "ami-0fedcba9876543210"}))
    assert mocks.one("launchTemplate:LaunchTemplate").inputs["imageId"] == "ami-0fedcba9876543210"


def test_instances_accept_traffic_only_from_the_load_balancer(mocks: Mocks) -> None:
    groups = {sg.name: sg for sg in mocks.of_type("securityGroup:SecurityGroup")}
    instance_group_id = f"{groups['fleet-instances'].name}-id"
    alb_group_id = f"{groups['endpoint-alb'].name}-id"
    ingress = mocks.of_type("securityGroupIngressRule:SecurityGroupIngressRule")
    to_instances = [rule.inputs for rule in ingress if rule.inputs["securityGroupId"] == instance_group_id]
    assert to_instances == [
        {
            "securityGroupId": instance_group_id,
            "ipProtocol": "tcp",
            "fromPort": 3000,
            "toPort": 3000,
            "referencedSecurityGroupId": alb_group_id,
            "description": "service port, from the load balancer",
        }
    ]
    for rule in ingress:
        assert rule.inputs["fromPort"] != 22 and rule.inputs["toPort"] != 22
    for group in groups.values():
        assert not group.inputs.get("ingress")  # no inline rules that could open more
    for subnet in mocks.of_type("ec2/subnet:Subnet"):
        assert not subnet.inputs.get("mapPublicIpOnLaunch")


def test_no_wildcard_iam_actions(mocks: Mocks) -> None:
    (policy,) = mocks.of_type("iam/rolePolicy:RolePolicy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    actions = [action for statement in statements for action in statement["Action"]]
    assert actions and all("*" not in action for action in actions)
    pull = next(s for s in statements if s["Sid"] == "EcrPull")
    assert pull["Resource"].endswith(":repository/registry-repo")  # this repository only
    assert not mocks.of_type("rolePolicyAttachment:RolePolicyAttachment")  # no broad managed policies


# --- endpoint, registry, network, operations ----------------------------------------------------------


def test_load_balancer_checks_readiness(mocks: Mocks) -> None:
    target_group = mocks.one("targetGroup:TargetGroup").inputs
    assert target_group["port"] == 3000 and target_group["protocol"] == "HTTP"
    assert target_group["healthCheck"]["path"] == "/readyz"
    assert target_group["healthCheck"]["matcher"] == "200"
    assert 0 < target_group["deregistrationDelay"] <= 120
    assert target_group["loadBalancingAlgorithmType"] == "least_outstanding_requests"
    (listener,) = mocks.of_type("lb/listener:Listener")
    assert listener.inputs["port"] == 80 and listener.inputs["defaultActions"][0]["type"] == "forward"
    assert mocks.one("lb/loadBalancer:LoadBalancer").inputs["internal"] is False


def test_https_with_a_certificate_redirects_http() -> None:
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    mocks, outputs = run_program(parse({"region": "us-east-1", "certificate_arn": arn}))
    listeners = {listener.inputs["port"]: listener.inputs for listener in mocks.of_type("lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["certificateArn"] == arn
    assert listeners[80]["defaultActions"][0]["type"] == "redirect"
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    assert outputs["endpoint_url"].startswith("https://")


def test_registry_scans_and_expires_images(mocks: Mocks) -> None:
    repository = mocks.one("ecr/repository:Repository").inputs
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    rules = json.loads(mocks.one("ecr/lifecyclePolicy:LifecyclePolicy").inputs["policy"])["rules"]
    assert {rule["selection"]["tagStatus"] for rule in rules} == {"untagged", "any"}


def test_network_spans_two_zones_with_private_instances(mocks: Mocks) -> None:
    subnets = mocks.of_type("ec2/subnet:Subnet")
    assert len({subnet.inputs["availabilityZone"] for subnet in subnets}) == 2
    assert len(mocks.of_type("natGateway:NatGateway")) == 1
    assert mocks.one("vpcEndpoint:VpcEndpoint").inputs["serviceName"] == "com.amazonaws.us-east-1.s3"


def test_existing_network_is_used_as_given() -> None:
    mocks, _ = run_program(
        parse({"region": "us-east-1", "vpc_id": "vpc-1", "public_subnet_ids": ["subnet-a", "subnet-b"],
               "private_subnet_ids": ["subnet-c", "subnet-d"]})
    )  # fmt: skip
    assert not mocks.of_type("ec2/vpc:Vpc") and not mocks.of_type("ec2/subnet:Subnet")
    assert mocks.one("autoscaling/group:Group").inputs["vpcZoneIdentifiers"] == ["subnet-c", "subnet-d"]
    assert mocks.one("lb/loadBalancer:LoadBalancer").inputs["subnets"] == ["subnet-a", "subnet-b"]


def test_prewarming_schedules_and_predictive_scaling() -> None:
    mocks, _ = run_program(
        parse({"region": "us-east-1", "predictive_scaling": "forecast-only",
               "scheduled_actions": [{"name": "morning", "cron": "45 7 * * MON-FRI", "min_size": 3}]})
    )  # fmt: skip
    schedule = mocks.one("autoscaling/schedule:Schedule").inputs
    assert schedule["recurrence"] == "45 7 * * MON-FRI" and schedule["minSize"] == 3
    assert schedule["maxSize"] == -1 and schedule["desiredCapacity"] == -1  # unchanged
    predictive = policies(mocks)["scaling-predictive"].inputs
    assert predictive["policyType"] == "PredictiveScaling"
    assert predictive["predictiveScalingConfiguration"]["mode"] == "ForecastOnly"


def test_dashboard_and_notifications(mocks: Mocks) -> None:
    body = json.loads(mocks.one("cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    titles = " | ".join(widget["properties"]["title"] for widget in body["widgets"])
    for word in ("Requests", "Latency", "GPU", "In-flight", "warm pool", "Scaling alarms"):
        assert word in titles
    assert len(body["widgets"][-1]["properties"]["alarms"]) == 5
    assert mocks.one("sns/topic:Topic")
    assert not mocks.of_type("topicSubscription:TopicSubscription")  # only with alarm_email


def test_stack_outputs(default_stack: tuple[Mocks, dict[str, Any]]) -> None:
    _, outputs = default_stack
    assert outputs["endpoint_url"] == "http://endpoint-alb.elb.amazonaws.com"
    assert outputs["ecr_repository_url"].endswith(".dkr.ecr.us-east-1.amazonaws.com/elastic-resnet-dev")
    assert outputs["asg_name"] == "elastic-resnet-dev-gpu"
    assert outputs["dashboard_url"].endswith("#dashboards:name=elastic-resnet-dev")


def test_every_resource_is_tagged(mocks: Mocks) -> None:
    taggable = ["ec2/vpc:Vpc", "lb/loadBalancer:LoadBalancer", "ecr/repository:Repository", "iam/role:Role",
                "launchTemplate:LaunchTemplate", "metricAlarm:MetricAlarm", "sns/topic:Topic"]  # fmt: skip
    for kind in taggable:
        for resource in mocks.of_type(kind):
            assert resource.inputs["tags"]["project"] == "elastic-resnet", resource.name
