"""elastic-resnet's Pulumi program: the service on an auto-scaled GPU fleet behind a load balancer."""
