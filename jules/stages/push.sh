#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Push the three zone images with their immutable tag, the commit id.
#
#   jules/stages/push.sh
#
# Takes the images jules/stages/build.sh built (zone-etl/<zone>:<commit>), tags them
# $RELEASE_IMAGE_PREFIX/<zone>:<commit> and pushes them. Refuses, before pushing anything, when one of
# the three tags already exists in the registry: a tag is never overwritten.
#
# Environment: RELEASE_IMAGE_PREFIX (required, <registry>/<namespace>/zone-etl), IMAGE_TAG (default: git
# HEAD; must be the checked-out commit id), CONTAINER_RUNTIME (podman or docker), REGISTRY_USER and
# REGISTRY_PASSWORD (optional: log in first, the password goes through stdin), PUSH_OPTS (extra options
# of `push`, split on white space), SKOPEO (skopeo, used to look the tags up when installed).
set -euo pipefail
export STAGE=push
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[[ $# -eq 0 ]] || die 2 "usage: jules/stages/push.sh (the tag is the commit id: IMAGE_TAG or git HEAD)"
tag=$(release_tag)
prefix=$(release_prefix)
runtime=$(container_runtime)
push_opts=()
if [[ -n ${PUSH_OPTS:-} ]]; then read -r -a push_opts <<<"$PUSH_OPTS"; fi

if [[ -n ${REGISTRY_USER:-} ]]; then
    [[ -n ${REGISTRY_PASSWORD:-} ]] || die 2 "REGISTRY_USER is set but REGISTRY_PASSWORD is not"
    registry=${prefix%%/*}
    log "logging in to $registry as $REGISTRY_USER"
    printf '%s' "$REGISTRY_PASSWORD" | "$runtime" login --username "$REGISTRY_USER" --password-stdin "$registry" >/dev/null
fi

# Check all three first: a release is pushed whole or not at all.
for zone in "${ZONES[@]}"; do
    local_image="$LOCAL_IMAGE_PREFIX/$zone:$tag"
    remote_image="$prefix/$zone:$tag"
    "$runtime" image inspect "$local_image" >/dev/null 2>&1 ||
        die 2 "no local image $local_image: run jules/stages/build.sh $tag first"
    if remote_exists "$runtime" "$remote_image"; then
        die 1 "$remote_image already exists in the registry: tags are immutable, refusing to push it again"
    fi
done

for zone in "${ZONES[@]}"; do
    local_image="$LOCAL_IMAGE_PREFIX/$zone:$tag"
    remote_image="$prefix/$zone:$tag"
    log "pushing $remote_image"
    "$runtime" tag "$local_image" "$remote_image"
    "$runtime" push "${push_opts[@]}" "$remote_image"
done
log "pushed ${#ZONES[@]} images with tag $tag to $prefix"
