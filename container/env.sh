# Shared settings of the container/ scripts (sourced, not run).
# shellcheck shell=bash
CONTAINER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$CONTAINER_DIR")"
export CONTAINERS_CONF="$CONTAINER_DIR/containers.conf"
export BENTOML_DO_NOT_TRACK=true
# Which image: VARIANT=gpu (bentofile.yaml, the default) or cpu (bentofile.cpu.yaml: no torch, OpenVINO
# with the INT8 model too). The names match infra/instance_types.py's kinds (bentofile, image_variant).
export VARIANT="${VARIANT:-gpu}"
case $VARIANT in
  gpu) BENTOFILE=bentofile.yaml suffix= ;;
  cpu) BENTOFILE=bentofile.cpu.yaml suffix=-cpu ;;
  *) echo "VARIANT=$VARIANT: expected gpu or cpu" >&2; exit 2 ;;
esac
# Everything built here lives under build/ (git-ignored): the BentoML home with the model store and the
# bento, one per variant (the CPU store also holds resnet18-int8, which the GPU bento would pack too).
export BUILD_DIR="${BUILD_DIR:-$REPO/build/container$suffix}"
export BENTOML_HOME="$BUILD_DIR/bentoml"
VENV="${VENV:-$REPO/.venv}"
# The bento's name (the bentofile's `name`), which `bentoml containerize` tags the image with.
IMAGE_NAME="${IMAGE_NAME:-elastic-resnet$suffix}"
# The name BentoML's generated Dockerfile starts FROM (bentofile.yaml: distro debian, python 3.11).
BASE_IMAGE="docker.io/library/python:3.11-slim"
