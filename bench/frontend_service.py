"""The service with its model replaced by a no-op: for measuring the front end only (``python -m bench.frontend``).

Everything but the forward pass is the real service (``service.http_service``): admission, HTTP,
multipart parsing, decoding on its thread pool (one thread per core), adaptive batching, top-5 and JSON.
The model thread answers every batch at once with fixed-shape uniform probabilities, so a load test
measures what one API process can parse and decode, not what a GPU can classify. Served only by an
explicit ``bentoml serve bench.frontend_service:ImageClassifier``; never part of a bento (bentofile.yaml
packs ``service/`` only) and never a serving default. Its answers say so (``model.warning``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from service import http_service
from service.schemas import ModelInfo

NO_MODEL_WARNING = "NO MODEL: the front-end benchmark's no-op classifier (bench/frontend_service.py)"
CLASSES = 1000


class NoOpModel:
    """Stands in for :class:`service.model_service.LoadedModel`: ready at once, answers at once."""

    ready = True
    classifier = None
    not_ready_reason: str | None = None

    def __init__(self, reference: Any = None, int8_reference: Any = None) -> None:
        self.info = ModelInfo(
            tag=None,
            weights="none",
            trained=False,
            runtime="none",
            device="none",
            precision="none",
            warning=NO_MODEL_WARNING,
        )

    def infer(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, 224, 224) -> float32 (N, 1000) uniform probabilities, without looking at them."""
        return np.full((len(crops), CLASSES), 1.0 / CLASSES, dtype=np.float32)


# `python -m bench.frontend --switch-interval S`: the interpreter's GIL switch interval (default 5 ms), to see
# how much of one process's ceiling is threads waiting for the GIL.
if os.environ.get("BENCH_SWITCH_INTERVAL_S"):
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL_S"]))

# ImageClassifier.__init__ looks LoadedModel up in http_service's namespace when a worker starts.
http_service.LoadedModel = NoOpModel  # type: ignore[misc, assignment, attr-defined]
ImageClassifier = http_service.ImageClassifier
