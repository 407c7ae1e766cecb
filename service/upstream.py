"""Every change this service makes to how BentoML, uvicorn and circus behave, installed from one place.

Each module says what it fixes and why; all were seen on bentoml 1.4.40, uvicorn 0.54.0 and
circus 0.18.3 (requirements.lock.txt). Re-check them when any of those is upgraded.

- :mod:`service.multipart`: BentoML's multipart parser fetches URLs sent as text fields, and answers a
  file under a wrong field name with 500;
- :mod:`service.keepalive`: `bentoml serve` keeps idle connections 5 s, less than a load balancer's 60 s;
- :mod:`service.drain`: on SIGTERM uvicorn stops accepting while circus keeps the socket open (new
  connections hang), nothing bounds the stop, and uvicorn's shutdown closes a just-accepted connection
  before reading its request;
- :mod:`service.respawn`: BentoML does not restart a crashed worker inside a container;
- :mod:`service.middleware_order`: BentoML runs the service's middlewares inside its metrics, tracing
  and access log, so every refusal (401, shed 503) costs their bookkeeping.

Elsewhere, because they cannot live in the service process: BentoML answers 4xx exceptions with a JSON
list (:mod:`service.errors` answers its own), its image sets ``BENTOML_HOME`` where a read-only root
cannot write (``infra/container.py``), and ``bentoml containerize`` with a Dockerfile template fails
unless TMPDIR is under the working directory (``container/upstream.py``, bentoml/BentoML#5566).
"""

from __future__ import annotations

from . import drain, keepalive, middleware_order, multipart, respawn


def install(*, workers: int) -> None:
    """``workers``: how many worker processes serve (accept on the server's socket)."""
    multipart.install()
    keepalive.install()
    drain.install(workers=workers)
    respawn.install()
    middleware_order.install()
