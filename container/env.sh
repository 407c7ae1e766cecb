# Shared settings of the container/ scripts (sourced, not run).
# shellcheck shell=bash
CONTAINER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$CONTAINER_DIR")"
export CONTAINERS_CONF="$CONTAINER_DIR/containers.conf"
export BENTOML_DO_NOT_TRACK=true
# Everything built here lives under build/ (git-ignored): the BentoML home with the model store and the bento.
BUILD_DIR="${BUILD_DIR:-$REPO/build/container}"
export BENTOML_HOME="$BUILD_DIR/bentoml"
VENV="${VENV:-$REPO/.venv}"
IMAGE_NAME="${IMAGE_NAME:-elastic-resnet}"
# The name BentoML's generated Dockerfile starts FROM (bentofile.yaml: distro debian, python 3.11).
BASE_IMAGE="docker.io/library/python:3.11-slim"
