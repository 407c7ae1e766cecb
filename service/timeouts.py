"""Connection and shutdown timings that the service and the stack in front of it must agree on.

Pure constants, no imports: the Pulumi program (``infra/``) reads them too, so that the load balancer,
the container stop timeout and the service can never disagree.
"""

from __future__ import annotations

# How long the server keeps an idle HTTP keep-alive connection open. It must outlast the load balancer's
# idle timeout (ALB default 60 s): when the server closes first, the ALB can reuse a connection that is
# already closed and answers its client 502. infra/ refuses an `albIdleTimeoutS` that is not below this.
KEEPALIVE_S = 75
