"""The service's own ASGI middlewares run in front of BentoML's, so that refusing a request is cheap.

BentoML 1.4.40 (``_bentoml_impl.server.app.ServiceAppFactory.middlewares``) puts the middlewares a
service adds with ``add_asgi_middleware`` inside its own: Prometheus request metrics, an OpenTelemetry
span, the access log line and the timeout. Every 401 (:mod:`service.auth`) and every 503 of admission
(:mod:`service.admission`) then paid for all of them, and under overload sheds are most requests:
128 clients retrying every 0.1 s on 2 cores got 596 sheds/s and 13.2 answers/s (a 16-client load got
27.4/s) with BentoML's order, 852 sheds/s and 21.5 answers/s with this one (docs/reliability.md).

What it costs: those refusals are no longer in BentoML's access log and request metrics. Admission and
auth log a count of them per reason instead (:class:`service.tally.Tally`), and the load balancer's own
metrics count every 401 and 503 the targets answer.
"""

from __future__ import annotations

from typing import Any

from _bentoml_impl.server.app import ServiceAppFactory

MARK = "in_front_of_bentoml"  # a class attribute of the middlewares that move


def own_first(middlewares: list[Any]) -> list[Any]:
    """``middlewares`` (outermost first) with the marked ones moved to the front, in their order. Only
    the ones that refuse requests move: a middleware that lets an exception from the handlers through
    (:class:`service.errors.AnswerRejected`) stays inside BentoML's."""
    front = [m for m in middlewares if getattr(m.cls, MARK, False)]
    return front + [m for m in middlewares if m not in front]


def install() -> None:
    original = ServiceAppFactory.middlewares
    if getattr(original.fget, "_own_first", False):
        return

    def middlewares(self: ServiceAppFactory) -> list[Any]:
        return own_first(original.fget(self))

    middlewares._own_first = True  # type: ignore[attr-defined]
    ServiceAppFactory.middlewares = property(middlewares)  # type: ignore[method-assign,assignment]
