"""Connection, shutdown and latency timings that the service and the stack in front of it must agree on.

Pure constants, no imports: the Pulumi program and the planner (``infra/``) read them too, so that the
load balancer, the container stop timeout, the planner and the service can never disagree.
"""

from __future__ import annotations

# How long the server keeps an idle HTTP keep-alive connection open. It must outlast the load balancer's
# idle timeout (ALB default 60 s): when the server closes first, the ALB can reuse a connection that is
# already closed and answers its client 502. infra/ refuses an `albIdleTimeoutS` that is not below this.
KEEPALIVE_S = 75

# How long a stopping worker may take to finish the requests it has accepted (SIGTERM -> its last
# answer; service/drain.py). No shorter than the longest a request may run (the API's traffic timeout,
# 60 s): a shorter bound kills requests that were on time.
DRAIN_TIMEOUT_S = 60
# After the drain, how long uvicorn may take to close the remaining connections before it cancels them.
CLOSE_TIMEOUT_S = 5
# SIGTERM -> process exit, at most (plus the interpreter's own teardown). The container's stop timeout
# (infra/container.py) and the Auto Scaling terminate hook are derived from it, so whatever stops the
# service gives it this long.
STOP_BOUND_S = DRAIN_TIMEOUT_S + CLOSE_TIMEOUT_S

# The latency target (RESNET18_MAX_LATENCY_MS's default): admission sheds, with 503, the requests that
# could not be answered within it, so the admitted ones are (p99). Per device: a CPU batch of 32 takes
# 0.4-1.2 s on 2 cores (AVX-512 vs AVX2 VMs seen here), a GPU one a few ms; the planner models the GPU
# value. A target under about two batch times cannot be met: a request may wait for the batch running.
MAX_LATENCY_MS_GPU = 1000
MAX_LATENCY_MS_CPU = 2000
