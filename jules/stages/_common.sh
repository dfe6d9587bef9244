# shellcheck shell=bash
# Helpers shared by the stage scripts of jules/stages (sourced, not run). Set STAGE before sourcing.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ROOT
# The zones, one image each, built from services/<zone>/Dockerfile (controlm/bin/run-zone has the same list).
# shellcheck disable=SC2034  # used by the stage scripts
ZONES=(staging conformed semantic)
# The name jules/stages/build.sh gives the images it builds: $ETL_IMAGE_PREFIX/<zone>:<tag>, default
# zone-etl/<zone>:<tag>.
LOCAL_IMAGE_PREFIX=${LOCAL_IMAGE_PREFIX:-${ETL_IMAGE_PREFIX:-zone-etl}}

log() { printf '%s: %s\n' "${STAGE:-jules}" "$*" >&2; }

# die CODE MESSAGE...
die() {
    local code=$1
    shift
    log "error: $*"
    exit "$code"
}

# The container runtime: CONTAINER_RUNTIME, else podman, else docker.
container_runtime() {
    if [[ -n ${CONTAINER_RUNTIME:-} ]]; then
        command -v "$CONTAINER_RUNTIME" >/dev/null 2>&1 || die 2 "CONTAINER_RUNTIME=$CONTAINER_RUNTIME is not on PATH"
        printf '%s\n' "$CONTAINER_RUNTIME"
    elif command -v podman >/dev/null 2>&1; then
        printf 'podman\n'
    elif command -v docker >/dev/null 2>&1; then
        printf 'docker\n'
    else
        die 2 "no container runtime: install podman (or docker), or set CONTAINER_RUNTIME"
    fi
}

# The release tag: the full id of the commit being released (IMAGE_TAG, else git HEAD). Tags are
# immutable: the same tag always names the images built from the same commit.
release_tag() {
    local head="" tag
    head=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null) || head=""
    tag=${IMAGE_TAG:-$head}
    [[ -n $tag ]] || die 2 "no release tag: set IMAGE_TAG to the commit id, or run inside the git checkout"
    [[ $tag =~ ^[0-9a-f]{40}$ ]] || die 2 "IMAGE_TAG=$tag is not a full commit id (40 hex digits): releases are tagged with the commit id"
    if [[ -n $head && $tag != "$head" ]]; then
        die 2 "IMAGE_TAG=$tag is not the checked-out commit $head: release the commit you build"
    fi
    printf '%s\n' "$tag"
}

# The registry path the release goes to (RELEASE_IMAGE_PREFIX, e.g. <registry>/<namespace>/zone-etl).
# It must name its registry: a bare name would go to the runtime's default registry.
release_prefix() {
    local prefix=${RELEASE_IMAGE_PREFIX:-}
    prefix=${prefix%/}
    [[ -n $prefix ]] || die 2 "RELEASE_IMAGE_PREFIX is not set: the registry path of the images, <registry>/<namespace>/zone-etl"
    local registry=${prefix%%/*}
    if [[ $prefix != */* || ($registry != *.* && $registry != *:* && $registry != localhost) ]]; then
        die 2 "RELEASE_IMAGE_PREFIX=$prefix does not start with a registry host: refusing to use the runtime's default registry"
    fi
    printf '%s\n' "$prefix"
}

# remote_exists RUNTIME REF: true when the registry already has REF (skopeo if installed, else
# `<runtime> manifest inspect`).
remote_exists() {
    local runtime=$1 ref=$2 skopeo=${SKOPEO:-skopeo}
    if command -v "$skopeo" >/dev/null 2>&1; then
        "$skopeo" inspect --raw "docker://$ref" >/dev/null 2>&1
    else
        "$runtime" manifest inspect "$ref" >/dev/null 2>&1
    fi
}
