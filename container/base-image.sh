#!/usr/bin/env bash
# A LOCAL STAND-IN for docker.io/library/python:3.11-slim, the image BentoML's generated Dockerfile starts
# FROM, for machines that reach no container registry (only the Debian and PyPI indexes). Built once with
# debootstrap from Debian bookworm's own python3.11, imported under the upstream name so `bentoml
# containerize` finds it, labelled as a stand-in. It is never pushed: a machine with a registry uses the
# real image and never runs this script.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if podman image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE present ($(podman image inspect --format '{{index .Labels "elastic-resnet.stand-in"}}' "$BASE_IMAGE" | sed 's/^true$/local stand-in/;s/^$/from a registry/'))"
  exit 0
fi
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
rootfs="$BUILD_DIR/base-rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"
# python3-pip: the Dockerfile pip-installs uv; passwd: it adds the bento user with groupadd/useradd.
debootstrap --variant=minbase --include=python3.11,python3-pip,python3-venv,ca-certificates,passwd \
  bookworm "$rootfs" "$MIRROR"
# The upstream image has `python`/`pip` on PATH in /usr/local/bin.
ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
# Package indexes may be reached through a TLS-intercepting proxy: trust what this machine trusts.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# PIP_BREAK_SYSTEM_PACKAGES: Debian's python is "externally managed"; the upstream image's is not.
tar -C "$rootfs" -c . | podman import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'LABEL elastic-resnet.stand-in=true' \
  --change 'CMD ["python3"]' \
  - "$BASE_IMAGE"
rm -rf "$rootfs"
echo "built the local stand-in $BASE_IMAGE (never push it)"
