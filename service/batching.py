"""BentoML's adaptive batching, called in-process by the HTTP handlers instead of over a second HTTP hop.

BentoML 1.4 batches only calls that arrive over HTTP at a ``batchable`` API: a second service (one more
HTTP round trip, pickling and session handling per request, ~10 CPU-ms per image here) or a call to the
service's own API through its in-process JSON client (a 224x224x3 crop as a JSON list). This module
drives the same machinery the server builds for a batchable API (``_bentoml_impl.server.app``,
BentoML 1.4.40): a :class:`CorkDispatcher` with its latency model and load shedding, BentoML's
containers to merge and split the batch, and the ``bentoml_service_adaptive_batch_size`` histogram with
the server's labels. Crops stay numpy arrays in one process: nothing is copied between processes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.context import server_context
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml._internal.runner.container import AutoContainer
from bentoml._internal.utils.metrics import exponential_buckets
from bentoml.exceptions import ServiceUnavailable

BATCH_DIM = 0


class Overloaded(ServiceUnavailable):
    """The dispatcher shed a request: it could not run within ``max_latency_ms``."""


def _shed() -> NoReturn:
    raise Overloaded("the request could not be batched within its latency bound")


class AdaptiveBatcher:
    """``await batcher(crops)`` runs ``infer`` on ``crops`` merged with other requests' crops.

    ``infer`` maps a uint8 (N, 3, H, W) array to a float32 (N, classes) one; it runs on ``executor``
    (torch releases the GIL, so the event loop keeps parsing and decoding meanwhile).
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        executor: concurrent.futures.ThreadPoolExecutor,
        *,
        max_batch_size: int,
        max_latency_ms: int,
        service_name: str,
        method_name: str = "infer",
    ) -> None:
        self._infer = infer
        self._thread = executor  # one thread: the forward passes' OpenMP team stays the same
        dispatcher: CorkDispatcher[np.ndarray, np.ndarray] = CorkDispatcher(
            max_latency_in_ms=max_latency_ms,
            max_batch_size=max_batch_size,
            fallback=_shed,
            get_batch_size=functools.partial(AutoContainer.get_batch_size, batch_dim=BATCH_DIM),
            batch_dim=(BATCH_DIM, BATCH_DIM),
        )
        self._call = dispatcher(self._run)
        self._histogram = _batch_size_histogram(max_batch_size).labels(
            runner_name=service_name,
            worker_index=server_context.worker_index,
            method_name=method_name,
            service_version=server_context.bento_version,
            service_name=server_context.bento_name,
        )

    async def __call__(self, crops: np.ndarray) -> np.ndarray:
        result = await self._call(crops)
        assert result is not None  # the dispatcher's fallback raises instead of returning None
        return result

    async def _run(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._histogram.observe(len(batches))  # requests merged into this forward pass
        batch, indices = AutoContainer.batches_to_batch(batches, BATCH_DIM)
        output = await asyncio.get_running_loop().run_in_executor(self._thread, self._infer, batch)
        return list(AutoContainer.batch_to_batches(output, indices, BATCH_DIM))


@functools.cache
def _batch_size_histogram(max_batch_size: int) -> Any:
    """The histogram BentoML's server keeps for batchable APIs (same name, labels and buckets)."""
    return BentoMLContainer.metrics_client.get().Histogram(
        namespace="bentoml_service",
        name="adaptive_batch_size",
        documentation="Service adaptive batch size",
        labelnames=["runner_name", "worker_index", "method_name", "service_version", "service_name"],
        buckets=exponential_buckets(1, 2, max(2, max_batch_size)),
    )
