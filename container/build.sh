#!/usr/bin/env bash
# Build the real service image on a machine without Docker or a registry (podman, local base stand-in):
#   tools (apt) -> stand-in base -> model store -> `bentoml build` -> `bentoml containerize --backend podman`
# Tags the image elastic-resnet:<bento version> and elastic-resnet:latest; prints the timings.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO"
t0=$SECONDS

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman runc debootstrap
fi
"$CONTAINER_DIR/base-image.sh"
t_base=$SECONDS

# The model store of this build (never committed): seeded stand-in weights, as ImageNet's cannot be
# downloaded here. A machine with internet sets CONTAINER_WEIGHTS=imagenet.
mkdir -p "$BENTOML_HOME"
weights=${CONTAINER_WEIGHTS:-$BUILD_DIR/resnet18-stand-in.pth}
if [[ $weights == "$BUILD_DIR/resnet18-stand-in.pth" && ! -f $weights ]]; then
  "$VENV/bin/python" "$CONTAINER_DIR/stand_in_weights.py" "$weights"
fi
"$VENV/bin/python" -m service.import_model --weights "$weights" --if-missing
tag=$(env -u RESNET18_WEIGHTS "$VENV/bin/bentoml" build --output tag | tail -n1 | sed 's/^__tag__://')
version=${tag#*:}
t_bento=$SECONDS

# isolation=chroot and network=host: what podman's builder can do inside this sandbox. `python -m
# container.upstream` is `bentoml` with the workaround a Dockerfile template needs (container/upstream.py).
"$VENV/bin/python" -m container.upstream containerize "$tag" --backend podman --opt isolation=chroot --opt network=host \
  -t "$IMAGE_NAME:$version" -t "$IMAGE_NAME:latest"
t_image=$SECONDS

size=$(podman image inspect --format '{{.Size}}' "$IMAGE_NAME:latest")
cat <<REPORT | tee "$BUILD_DIR/build-report.txt"
image      $IMAGE_NAME:$version (also :latest), bento $tag
size       $size bytes ($((size / 1000000)) MB, uncompressed)
time       base $((t_base - t0)) s, model+bento $((t_bento - t_base)) s, image $((t_image - t_bento)) s, total $((t_image - t0)) s
REPORT
