#!/usr/bin/env bash
# Run the image here as the instances run it: the hardened flags of infra/container.py, on the CPU.
#   container/run.sh [NAME] [HOST_PORT] [extra `podman run` args...]     (detached; prints the container id)
set -euo pipefail
source "$(dirname "$0")/env.sh"
name=${1:-elastic-resnet}
port=${2:-3000}
shift $(($# < 2 ? $# : 2))
mapfile -t hardened < <(cd "$REPO" && "$VENV/bin/python" -m infra.container --engine podman --lines)
podman rm -f "$name" >/dev/null 2>&1 || true
# RESNET18_DEVICE=cpu: no GPU here (the image's default is cuda, which fails readiness without one).
exec podman run --detach --name "$name" --publish "127.0.0.1:$port:3000" "${hardened[@]}" \
  --env RESNET18_DEVICE=cpu "$@" "$IMAGE_NAME:${IMAGE_TAG:-latest}"
