#!/usr/bin/env bash
# One-shot GPU check, for a bare GPU machine with torch and torchvision preinstalled (under 8 minutes):
# raw fp16/fp32 ceiling per batch size, fp16 vs fp32 top-1 agreement, end-to-end images/s through
# `bentoml serve`; then (issue 20) 1, 2 and 4 API processes on one GPU with each one's GPU memory after
# warm-up and after load, the hardened container flags on this GPU (where docker or podman and a local
# image exist), device decoding next to queued forward passes, and the front end's ceiling per process.
# Without a package index, BentoML and the rest of the service's runtime come from ./wheels (`make wheels`
# on a machine with one, for Python 3.12; carry the folder with the tree); without BentoML it measures the
# same batched model path in-process instead.
#   bash bench/gpu_check.sh            # results in bench/results/gpu_check.json (or $OUT)
# Time budget (H200 class, 16 cores): install ~30 s, raw + agreement ~60 s, service ~60 s, workers 1/2/4
# ~240 s, container flags ~10 s (100 s at most), device decoding ~45 s, front end ~75 s. Every part after
# the service one is skipped, and says so, when it would end past TOTAL_S (default 460 s) from this start.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TOTAL_S=${TOTAL_S:-460}
"$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
if ! "$PYTHON" -c 'import bentoml' 2>/dev/null && [[ -d wheels ]]; then
  "$PYTHON" -m pip install --quiet --no-index --find-links wheels wheels/*.whl || echo "BentoML not installable: in-process fallback"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
nvidia-container-cli --version 2>/dev/null | head -n 1 || echo "no nvidia-container-cli"
exec "$PYTHON" -m bench.gpu_check --out "${OUT:-bench/results}" --budget-s "$((TOTAL_S - SECONDS))" "$@"
