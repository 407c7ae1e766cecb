"""Connection and shutdown timings that the service and the stack in front of it must agree on.

Pure constants, no imports: the Pulumi program (``infra/``) reads them too, so that the load balancer,
the container stop timeout and the service can never disagree.
"""

from __future__ import annotations

# How long the server keeps an idle HTTP keep-alive connection open. It must outlast the load balancer's
# idle timeout (ALB default 60 s): when the server closes first, the ALB can reuse a connection that is
# already closed and answers its client 502. infra/ refuses an `albIdleTimeoutS` that is not below this.
KEEPALIVE_S = 75

# How long a stopping instance may take to finish the requests it has accepted (SIGTERM -> exit). No
# shorter than the longest a request may run (the API's traffic timeout, 60 s): a shorter bound kills
# requests that were on time. The container's stop timeout (infra/container.py) and the Auto Scaling
# terminate hook are derived from it, so whatever stops the service gives it this long.
DRAIN_TIMEOUT_S = 60
