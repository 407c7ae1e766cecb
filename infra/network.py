"""Network: a VPC across two or more AZs, public subnets for the load balancer, private ones for the GPUs.

Instances get no public address; they reach ECR, CloudWatch and SSM through one NAT gateway, and S3
(where ECR keeps image layers, the bulk of every pull) through a free gateway endpoint, so multi-GB
image pulls cost no NAT data processing. One NAT gateway, not one per AZ: cheaper while idle, at the
price of outbound access (not serving) during an AZ outage.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .config import NetworkConfig


@dataclass(frozen=True)
class NetworkArgs:
    name: str
    region: str
    config: NetworkConfig
    tags: dict[str, str]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("elastic-resnet:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        wanted = args.config.availability_zones
        zones = aws.get_availability_zones(state="available").names[:wanted]
        if len(zones) < wanted:
            raise ValueError(f"the region has {len(zones)} available AZs; {wanted} requested")
        cidrs = [str(block) for block in ipaddress.ip_network(args.config.cidr).subnets(new_prefix=20)]

        def tags(resource: str) -> dict[str, str]:
            return {**args.tags, "Name": f"{args.name}-{resource}"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.config.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags("vpc"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags("igw"), opts=child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags=tags("public"),
            opts=child,
        )
        public = self._subnets(name, "public", vpc.id, zones, cidrs[: len(zones)], public_routes, tags)
        nat_ip = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=tags("nat"), opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=nat_ip.id,
            subnet_id=public[0].id,
            tags=tags("nat"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
        )
        private_routes = aws.ec2.RouteTable(
            f"{name}-private",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
            tags=tags("private"),
            opts=child,
        )
        private = self._subnets(
            name, "private", vpc.id, zones, cidrs[len(zones) : 2 * len(zones)], private_routes, tags
        )
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[private_routes.id],
            tags=tags("s3"),
            opts=child,
        )
        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )

    def _subnets(
        self,
        name: str,
        tier: str,
        vpc_id: pulumi.Output[str],
        zones: Sequence[str],
        cidrs: Sequence[str],
        routes: aws.ec2.RouteTable,
        tags: Callable[[str], dict[str, str]],
    ) -> list[aws.ec2.Subnet]:
        """One subnet per zone, all on ``routes``; none gives its instances a public address."""
        subnets = []
        for index, (zone, cidr) in enumerate(zip(zones, cidrs, strict=True)):
            subnet = aws.ec2.Subnet(
                f"{name}-{tier}-{index}",
                vpc_id=vpc_id,
                availability_zone=zone,
                cidr_block=cidr,
                map_public_ip_on_launch=False,
                tags=tags(f"{tier}-{zone}"),
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-{tier}-{index}",
                subnet_id=subnet.id,
                route_table_id=routes.id,
                opts=pulumi.ResourceOptions(parent=self),
            )
            subnets.append(subnet)
        return subnets
