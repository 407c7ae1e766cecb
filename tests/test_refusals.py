"""Refusals are cheap: the service's middlewares run in front of BentoML's, and their refusals are
counted into one log line per interval (service/middleware_order.py, service/tally.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _bentoml_impl.server.app import ServiceAppFactory
from starlette.middleware import Middleware

from service import middleware_order
from service.admission import AdmissionControl
from service.auth import ApiKeyAuth
from service.errors import AnswerRejected
from service.tally import Tally


class BentoMLs:  # stands for BentoML's metrics, tracing, access log
    def __init__(self, app: object) -> None:
        self.app = app


def test_the_refusing_middlewares_go_first_in_their_order() -> None:
    given = [BentoMLs, ApiKeyAuth, BentoMLs, AdmissionControl, AnswerRejected]
    moved = middleware_order.own_first([Middleware(cls) for cls in given])  # type: ignore[arg-type]
    assert [m.cls for m in moved] == [ApiKeyAuth, AdmissionControl, BentoMLs, BentoMLs, AnswerRejected]


def test_installed_on_bentomls_app_factory() -> None:
    import service.http_service  # noqa: F401  (installs every upstream workaround)

    assert getattr(ServiceAppFactory.middlewares.fget, "_own_first", False)


def test_a_tally_logs_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("bentoml.test_tally")

    async def refuse_many() -> None:
        tally = Tally(logger, "refused", every_s=0.05)
        for _ in range(500):
            tally.add("503 over the latency target")
        tally.add("413 too large")
        await asyncio.sleep(0.1)
        tally.add("503 draining")
        await asyncio.sleep(0.1)

    with caplog.at_level(logging.WARNING, logger="bentoml.test_tally"):
        asyncio.run(refuse_many())
    assert [r.getMessage() for r in caplog.records] == [
        "refused 501 requests in the last 0.05 s: 503 over the latency target 500, 413 too large 1",
        "refused 1 requests in the last 0.05 s: 503 draining 1",
    ]
