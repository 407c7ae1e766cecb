"""Who may call the endpoint (issue 12, docs/security.md): the `access` section, read through Pulumi's
config layer exactly as `pulumi config set --path 'elastic-resnet:access.…'` stores it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError
from infra.user_data import KEYS_DIR, KEYS_MOUNT, render
from service.routes import CLIENT_ROUTES, DOCS_ROUTES, HEALTH_ROUTES, METRICS_ROUTE
from tests.infra.mocks import Mocks, run_cli_config
from tests.infra.test_user_data import PARAMS as USER_DATA

REGION_ONLY = {"aws:region": "us-east-1"}
KEYS_PARAMETER = "/elastic-resnet/dev/api-keys"
OFFICE = "203.0.113.0/24"
VPN = "198.51.100.7/32"


def stack(access: dict[str, Any], **more: str) -> Mocks:
    """A stack with these `access` keys, as the CLI passes a section set with --path: JSON text."""
    mocks, _ = run_cli_config({**REGION_ONLY, "elastic-resnet:access": json.dumps(access), **more})
    return mocks


@pytest.fixture(scope="module")
def public() -> Mocks:
    mocks, _ = run_cli_config(REGION_ONLY)
    return mocks


@pytest.fixture(scope="module")
def closed() -> Mocks:
    """The docs' "close it" example: keys and an allow-list, two config lines."""
    return stack({"apiKeysParameter": KEYS_PARAMETER, "allowedCidrs": [OFFICE, VPN]})


def ingress(mocks: Mocks) -> set[tuple[int, str]]:
    rules = mocks.of_type("vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    return {(int(r.inputs["fromPort"]), r.inputs["cidrIpv4"]) for r in rules if r.name.startswith("endpoint-")}


def statements(mocks: Mocks) -> list[dict[str, Any]]:
    (policy,) = mocks.of_type("iam/rolePolicy:RolePolicy")
    result: list[dict[str, Any]] = json.loads(policy.inputs["policy"])["Statement"]
    return result


def user_data(mocks: Mocks) -> str:
    import base64

    template = mocks.one("ec2/launchTemplate:LaunchTemplate")
    return base64.b64decode(template.inputs["userData"]).decode()


def listener_answer(mocks: Mocks, path: str) -> str:
    """What the serving listener does with a request for ``path``, evaluated as an ALB does: rules by
    priority, path patterns with * and ? (case-sensitive), else the default action."""
    (listener,) = mocks.of_type("lb/listener:Listener")
    rules = sorted(mocks.of_type("lb/listenerRule:ListenerRule"), key=lambda rule: rule.inputs["priority"])
    for rule in rules:
        (condition,) = rule.inputs["conditions"]
        if any(fnmatchcase(path, pattern) for pattern in condition["pathPattern"]["values"]):
            (action,) = rule.inputs["actions"]
            assert action["type"] == "forward"
            return "forward"
    (default,) = listener.inputs["defaultActions"]
    assert default["type"] == "fixed-response"
    return str(default["fixedResponse"]["statusCode"])


def test_the_default_stays_public_and_says_so(public: Mocks) -> None:
    assert ingress(public) == {(80, "0.0.0.0/0")}
    assert any("the endpoint is public" in warning for warning in public.warnings)
    assert not [s for s in statements(public) if s["Sid"].startswith("ApiKeys")]
    assert "RESNET18_API_KEYS_FILE" not in user_data(public)
    assert not public.of_type("wafv2/webAcl:WebAcl") and not public.of_type("budgets/budget:Budget")


def test_only_the_allowed_networks_reach_the_load_balancer(closed: Mocks) -> None:
    assert ingress(closed) == {(80, OFFICE), (80, VPN)}
    assert not any("the endpoint is public" in warning for warning in closed.warnings)
    https = stack(
        {"allowedCidrs": [OFFICE]},
        **{"elastic-resnet:loadBalancer": json.dumps({"certificateArn": "arn:aws:acm:us-east-1:1:certificate/a"})},
    )
    assert ingress(https) == {(80, OFFICE), (443, OFFICE)}  # 80 only redirects to 443


def test_the_instance_role_reads_only_the_one_keys_parameter(closed: Mocks) -> None:
    reads = [s for s in statements(closed) if any(a.startswith("ssm:GetParameter") for a in s["Action"])]
    assert reads == [
        {
            "Sid": "ApiKeys",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": f"arn:aws:ssm:us-east-1:123456789012:parameter{KEYS_PARAMETER}",
        }
    ]
    assert not [s for s in statements(closed) if "kms:Decrypt" in s["Action"]]  # aws/ssm: no statement needed
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with_key = stack({"apiKeysParameter": KEYS_PARAMETER, "apiKeysKmsKeyArn": key})
    (decrypt,) = [s for s in statements(with_key) if "kms:Decrypt" in s["Action"]]
    assert decrypt["Resource"] == key
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}


def test_the_instance_fetches_the_keys_and_mounts_them_read_only(closed: Mocks) -> None:
    script = user_data(closed)
    assert f"--name {KEYS_PARAMETER} \\\n  --with-decryption" in script
    assert f"--volume {KEYS_DIR}:{KEYS_MOUNT}:ro --env RESNET18_API_KEYS_FILE={KEYS_MOUNT}/api-keys" in script
    assert "OnUnitActiveSec=5min" in script  # rotation and revocation reach the instance without a refresh
    # fetched before the container starts: without its keys the service must not serve openly
    assert script.index("/usr/local/bin/elastic-resnet-fetch-keys  #") < script.index("docker run --detach")


def test_the_keys_script_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck
    params = dataclasses.replace(USER_DATA, api_keys_parameter=KEYS_PARAMETER)
    path = tmp_path / "user-data.sh"
    path.write_text(render(params))
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_load_balancer_forwards_only_the_api_and_health_paths(public: Mocks) -> None:
    for path in (*CLIENT_ROUTES, *HEALTH_ROUTES):
        assert listener_answer(public, path) == "forward", path
    for path in (METRICS_ROUTE, "/docs.json", "/", "/static_content/index.js", "/predict/../metrics", "/PREDICT"):
        assert listener_answer(public, path) == "404", path
    (listener,) = public.of_type("lb/listener:Listener")
    body = listener.inputs["defaultActions"][0]["fixedResponse"]
    assert body["contentType"] == "application/json" and json.loads(body["messageBody"]) == {"error": "not found"}


def test_the_docs_are_forwarded_only_when_asked_for() -> None:
    docs = stack({"exposeDocs": True})
    for path in ("/docs.json", "/", "/static_content/swagger-ui.css"):
        assert listener_answer(docs, path) == "forward", path
    assert listener_answer(docs, METRICS_ROUTE) == "404"
    assert len(DOCS_ROUTES) <= 5 and len(CLIENT_ROUTES) + len(HEALTH_ROUTES) <= 5  # AWS: 5 values per rule


def test_an_internal_load_balancer_sits_in_the_private_subnets(public: Mocks) -> None:
    internal = stack({"internal": True, "allowedCidrs": ["10.0.0.0/8"]})
    alb = internal.one("lb/loadBalancer:LoadBalancer").inputs
    assert alb["internal"] is True
    assert alb["subnets"] and all("private" in subnet for subnet in alb["subnets"])
    public_alb = public.one("lb/loadBalancer:LoadBalancer").inputs
    assert public_alb["internal"] is False and all("public" in subnet for subnet in public_alb["subnets"])


def test_waf_rate_limits_each_client_ip_and_blocks_known_bad_inputs() -> None:
    mocks = stack({"rateLimitPer5Min": 2000, "apiKeysParameter": KEYS_PARAMETER})
    acl = mocks.one("wafv2/webAcl:WebAcl").inputs
    assert acl["scope"] == "REGIONAL" and "allow" in acl["defaultAction"]
    rules = {rule["name"]: rule for rule in acl["rules"]}
    rate = rules["rate-limit-per-ip"]
    assert "block" in rate["action"]
    assert rate["statement"]["rateBasedStatement"] == {
        "aggregateKeyType": "IP",
        "limit": 2000,
        "evaluationWindowSec": 300,
    }
    managed = rules["aws-known-bad-inputs"]["statement"]["managedRuleGroupStatement"]
    assert (managed["vendorName"], managed["name"]) == ("AWS", "AWSManagedRulesKnownBadInputsRuleSet")
    association = mocks.one("wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association["resourceArn"] == closed_alb_arn(mocks)
    dashboard = json.loads(mocks.one("cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    waf_rows = [row for widget in dashboard["widgets"] for row in widget["properties"].get("metrics", [])]
    assert ["AWS/WAFV2", "BlockedRequests", "WebACL", "elastic-resnet-dev-waf", "Region", "us-east-1"] in [
        row[:6] for row in waf_rows
    ]


def test_a_monthly_budget_alerts_on_the_stacks_tag() -> None:
    mocks = stack({"monthlyBudgetUsd": 500}, **{"elastic-resnet:alarmEmail": "oncall@example.com"})
    budget = mocks.one("budgets/budget:Budget").inputs
    assert (budget["budgetType"], budget["timeUnit"], budget["limitAmount"], budget["limitUnit"]) == (
        "COST",
        "MONTHLY",
        "500.00",
        "USD",
    )
    assert budget["costFilters"] == [{"name": "TagKeyValue", "values": ["user:stack$dev"]}]
    kinds = {(n["notificationType"], n["threshold"]) for n in budget["notifications"]}
    assert kinds == {("FORECASTED", 80), ("FORECASTED", 100), ("ACTUAL", 80), ("ACTUAL", 100)}
    assert all(n["subscriberEmailAddresses"] == ["oncall@example.com"] for n in budget["notifications"])


@pytest.mark.parametrize(
    ("access", "problem"),
    [
        ({"allowedCidrs": ["203.0.113.7/24"]}, "host bits set"),
        ({"allowedCidrs": ["2001:db8::/32"]}, "IPv6"),
        ({"allowedCidrs": []}, "allowedCidrs"),
        ({"rateLimitPer5Min": 5}, "rateLimitPer5Min"),
        ({"monthlyBudgetUsd": 100}, "budgetEmail or alarmEmail"),
        ({"apiKeysParameter": "api-keys"}, "apiKeysParameter"),
        ({"apiKeyParameter": KEYS_PARAMETER}, "apiKeyParameter"),  # a typo is refused, not ignored
    ],
)
def test_bad_access_settings_stop_the_program(access: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        stack(access)


def closed_alb_arn(mocks: Mocks) -> str:
    """The ARN the mocks gave the stack's one load balancer."""
    (alb,) = [d for d in mocks.declared if d.type == "aws:lb/loadBalancer:LoadBalancer"]
    return f"arn:aws:mock:us-east-1:123456789012:loadbalancer/{alb.name}"
