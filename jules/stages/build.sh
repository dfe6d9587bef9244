#!/usr/bin/env bash
# Stage "build": the three zone images from the repository root, tagged with the commit id
# (immutable: a tag names exactly one commit's code).
#
#   jules/stages/build.sh [TAG]
#
#   CONTAINER_RUNTIME  podman or docker (default: podman when installed, else docker)
#   BASE_IMAGE         the Dockerfiles' base image (default: their own, python:3.11-slim)
#   ETL_IMAGE_PREFIX   image name prefix (default zone-etl): images are $ETL_IMAGE_PREFIX/<zone>:<tag>
set -euo pipefail
cd "$(dirname "$0")/../.."

runtime="${CONTAINER_RUNTIME:-}"
if [ -z "$runtime" ]; then
    if command -v podman >/dev/null 2>&1; then runtime=podman; else runtime=docker; fi
fi
tag="${1:-$(git rev-parse HEAD)}"
if [ -z "${1:-}" ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    tag="${tag}-dirty"   # never give a clean commit's tag to code that is not that commit
fi
prefix="${ETL_IMAGE_PREFIX:-zone-etl}"
build_args=()
if [ -n "${BASE_IMAGE:-}" ]; then
    build_args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE}")
fi

for zone in staging conformed semantic; do
    image="${prefix}/${zone}:${tag}"
    echo "building ${image} with ${runtime}"
    started=$(date +%s)
    "$runtime" build "${build_args[@]}" \
        --label "org.opencontainers.image.revision=${tag}" \
        -f "services/${zone}/Dockerfile" -t "$image" .
    echo "built ${image} in $(($(date +%s) - started))s"
done
