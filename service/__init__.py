"""elastic-resnet's BentoML service: ResNet18 image classification with adaptive batching.

``bentofile.yaml`` points at ``service.http_service:ImageClassifier``; ``bentoml serve`` starts it.
This package file loads neither BentoML nor torch, so that light modules (``service.timeouts``) can be
read by the Pulumi program and the planner cheaply. It runs before any module of the service imports
torch, which is where the one setting that must precede torch lives.
"""

import os

# torch's OpenMP threads sleep at a barrier instead of spinning (libgomp reads this once, when torch
# loads; an explicit setting wins). Spinning threads took a core from HTTP parsing and decoding in the
# same process, and those preempted the spinning team in turn: 2 cores, batch 8, forward-pass CPU per
# image 22 -> 17 ms inside the server, 72 -> 78 images/s (docs/performance.md).
OMP_WAIT_POLICY = "PASSIVE"
os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
