"""Abuse limits and a cost guard: what stops a flood from holding the fleet at its maximum size.

- :class:`AbuseProtection`: an AWS WAF web ACL on the load balancer with a rate-based rule per client IP
  and AWS's managed rule group for known bad inputs. Not the "core rule set": its SizeRestrictions_BODY
  rule blocks every body over 8 KB, i.e. every image.
- :class:`CostGuard`: a monthly AWS Budgets alert on the stack's cost-allocation tag, actual and
  forecast, so a flood is noticed in hours rather than on the invoice.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

RATE_RULE_METRIC = "rate-limit"  # the WAF metric names the dashboard reads (Rule dimension)
BAD_INPUTS_RULE_METRIC = "known-bad-inputs"
BAD_INPUTS_RULE_GROUP = "AWSManagedRulesKnownBadInputsRuleSet"
RATE_WINDOW_S = 300  # the setting is per 5 minutes, AWS WAF's default evaluation window
BUDGET_ALERT_PERCENT = (80.0, 100.0)


def web_acl_metric(name: str) -> str:
    """The WebACL dimension of the stack's WAF metrics (the ACL's own visibility metric name)."""
    return f"{name}-waf"


@dataclass(frozen=True)
class AbuseProtectionArgs:
    name: str
    load_balancer_arn: pulumi.Input[str]
    rate_limit_per_5min: int  # requests per client IP per 5 minutes; over it, 403 until the rate falls
    tags: dict[str, str]


class AbuseProtection(pulumi.ComponentResource):
    web_acl_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AbuseProtectionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:access:AbuseProtection", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def visibility(metric: str) -> aws.wafv2.WebAclVisibilityConfigArgs:
            return aws.wafv2.WebAclVisibilityConfigArgs(
                cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
            )

        def rule_visibility(metric: str) -> aws.wafv2.WebAclRuleVisibilityConfigArgs:
            return aws.wafv2.WebAclRuleVisibilityConfigArgs(
                cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
            )

        rate_rule = aws.wafv2.WebAclRuleArgs(
            name="rate-limit-per-ip",
            priority=0,
            action=aws.wafv2.WebAclRuleActionArgs(block=aws.wafv2.WebAclRuleActionBlockArgs()),
            statement=aws.wafv2.WebAclRuleStatementArgs(
                rate_based_statement=aws.wafv2.WebAclRuleStatementRateBasedStatementArgs(
                    aggregate_key_type="IP", limit=args.rate_limit_per_5min, evaluation_window_sec=RATE_WINDOW_S
                )
            ),
            visibility_config=rule_visibility(RATE_RULE_METRIC),
        )
        bad_inputs_rule = aws.wafv2.WebAclRuleArgs(
            name="aws-known-bad-inputs",
            priority=1,
            # "none": keep the group's own actions (block). pulumi-aws 7.51 generates a field-less args class
            # with an unannotated __init__, hence the ignore.
            override_action=aws.wafv2.WebAclRuleOverrideActionArgs(
                none=aws.wafv2.WebAclRuleOverrideActionNoneArgs()  # type: ignore[no-untyped-call]
            ),
            statement=aws.wafv2.WebAclRuleStatementArgs(
                managed_rule_group_statement=aws.wafv2.WebAclRuleStatementManagedRuleGroupStatementArgs(
                    vendor_name="AWS", name=BAD_INPUTS_RULE_GROUP
                )
            ),
            visibility_config=rule_visibility(BAD_INPUTS_RULE_METRIC),
        )
        acl = aws.wafv2.WebAcl(
            f"{name}-acl",
            name=f"{args.name}-waf",
            scope="REGIONAL",  # an ALB's ACL is regional (CLOUDFRONT is for distributions)
            default_action=aws.wafv2.WebAclDefaultActionArgs(allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
            rules=[rate_rule, bad_inputs_rule],
            visibility_config=visibility(web_acl_metric(args.name)),
            tags=args.tags,
            opts=child,
        )
        aws.wafv2.WebAclAssociation(f"{name}-alb", resource_arn=args.load_balancer_arn, web_acl_arn=acl.arn, opts=child)
        self.web_acl_arn = acl.arn
        self.register_outputs({"web_acl_arn": self.web_acl_arn})


@dataclass(frozen=True)
class CostGuardArgs:
    name: str
    monthly_usd: float
    tag_key: str  # a cost-allocation tag the stack puts on every resource (activate it in Billing once)
    tag_value: str
    emails: list[str]


class CostGuard(pulumi.ComponentResource):
    budget_name: pulumi.Output[str]

    def __init__(self, name: str, args: CostGuardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:access:CostGuard", name, None, opts)
        notifications = [
            aws.budgets.BudgetNotificationArgs(
                comparison_operator="GREATER_THAN",
                notification_type=kind,
                threshold=percent,
                threshold_type="PERCENTAGE",
                subscriber_email_addresses=args.emails,
            )
            for kind in ("FORECASTED", "ACTUAL")
            for percent in BUDGET_ALERT_PERCENT
        ]
        budget = aws.budgets.Budget(
            f"{name}-budget",
            name=f"{args.name}-monthly",
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=f"{args.monthly_usd:.2f}",
            limit_unit="USD",
            cost_filters=[
                aws.budgets.BudgetCostFilterArgs(name="TagKeyValue", values=[f"user:{args.tag_key}${args.tag_value}"])
            ],
            notifications=notifications,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.budget_name = budget.name
        self.register_outputs({"budget_name": self.budget_name})
