#!/usr/bin/env bash
# Build the real service image on a machine without Docker or a registry (podman, local base stand-in):
#   tools (apt) -> stand-in base -> model store -> `bentoml build` -> `bentoml containerize --backend podman`
# VARIANT=gpu (default): bentofile.yaml, tagged elastic-resnet:<bento version> and :latest.
# VARIANT=cpu: bentofile.cpu.yaml (no torch), with an INT8 model in the store too, tagged elastic-resnet-cpu:...
# Prints the timings and the size (build/container[-cpu]/build-report.txt).
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
# downloaded here. A machine with internet sets CONTAINER_WEIGHTS=imagenet. The CPU image gets the
# "confident" stand-in (answers that look trained), which INT8 can be checked with.
mkdir -p "$BENTOML_HOME"
stand_in=$BUILD_DIR/resnet18-stand-in.pth kind=()
if [[ $VARIANT == cpu ]]; then
  stand_in=$BUILD_DIR/resnet18-stand-in-confident.pth kind=(--confident)
fi
weights=${CONTAINER_WEIGHTS:-$stand_in}
if [[ $weights == "$stand_in" && ! -f $weights ]]; then
  "$VENV/bin/python" "$CONTAINER_DIR/stand_in_weights.py" "$weights" "${kind[@]}"
fi
"$VENV/bin/python" -m service.import_model --weights "$weights" --if-missing
if [[ $VARIANT == cpu && -z $(ls -A "$BENTOML_HOME/models/resnet18-int8" 2>/dev/null) ]]; then
  # INT8 from 200 generated photos (a quarter held out to measure it against fp32). 0.9, not the default
  # 0.95: the stand-in is more sensitive to rounding than trained weights (tests/test_runtimes.py).
  photos=$BUILD_DIR/calibration
  "$VENV/bin/python" -c "import pathlib, sys; from bench.sample_images import varied_photo
d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True)
for seed in range(200): (d / f'photo-{seed:04d}.jpg').write_bytes(varied_photo(seed))" "$photos"
  "$VENV/bin/python" -m service.import_model --quantize int8 --calibration "$photos" \
    --min-agreement "${CONTAINER_MIN_AGREEMENT:-0.9}"
fi
t_model=$SECONDS
tag=$(env -u RESNET18_WEIGHTS "$VENV/bin/bentoml" build -f "$BENTOFILE" --output tag | tail -n1 | sed 's/^__tag__://')
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
time       base $((t_base - t0)) s, model $((t_model - t_base)) s, bento $((t_bento - t_model)) s, image $((t_image - t_bento)) s, total $((t_image - t0)) s
REPORT
