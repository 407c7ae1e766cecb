#!/usr/bin/env bash
# What the deploy rehearsal (tests/deploy/test_rehearsal.py) needs besides the venv: podman (+ runc, and
# debootstrap for the local stand-in base image, container/base-image.sh) and Debian's docker-registry,
# the real registry that stands in for ECR. Installs only what is missing. CI: .ci/run calls it first.
set -euo pipefail
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "deploy rehearsal tools: podman, runc, debootstrap, docker-registry present"
