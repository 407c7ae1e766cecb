#!/usr/bin/env bash
# One-shot GPU check, for a bare GPU machine with torch and torchvision preinstalled (under 8 minutes):
# raw fp16/fp32 ceiling per batch size, fp16 vs fp32 top-1 agreement, end-to-end images/s through
# `bentoml serve`. Without a package index, BentoML and the rest of the service's runtime come from
# ./wheels (`make wheels` on a machine with one, for Python 3.12; carry the folder with the tree);
# without BentoML it measures the same batched model path in-process instead.
#   bash bench/gpu_check.sh            # results in bench/results/gpu_check.json (or $OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
if ! "$PYTHON" -c 'import bentoml' 2>/dev/null && [[ -d wheels ]]; then
  "$PYTHON" -m pip install --quiet --no-index --find-links wheels wheels/*.whl || echo "BentoML not installable: in-process fallback"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$PYTHON" -m bench.gpu_check --out "${OUT:-bench/results}" "$@"
