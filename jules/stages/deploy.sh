#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Deploy the Control-M folder of the release to one environment.
#
#   jules/stages/deploy.sh <dev|test|prod> [--build-only]
#
# Runs `ctm deploy controlm/zone-etl.json <descriptor>`, where the descriptor is
# controlm/deploy/<env>.json (Control-M server, hosts, run-as user, env file, container options, mail)
# plus one rule that sets the image variables of the folder: ETL_IMAGE_PREFIX=$RELEASE_IMAGE_PREFIX and
# ETL_IMAGE_TAG=<commit id>. The next order of the folder runs the new images; a folder already
# ordered keeps the values it was ordered with. --build-only runs `ctm build` (validation, no change).
#
# Environment: RELEASE_IMAGE_PREFIX (required), IMAGE_TAG (default git HEAD), CTM (the Automation API
# CLI, default ctm), CTM_ENV (the ctm environment to use, as set up with `ctm env add`; default: the
# CLI's default environment), VERIFY_IMAGES (1: check the three images are in the registry first,
# default 1 when a container runtime or skopeo is installed), PYTHON (default python3).
set -euo pipefail
export STAGE=deploy
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$ROOT"

usage="usage: jules/stages/deploy.sh <dev|test|prod> [--build-only]"
[[ $# -ge 1 && $# -le 2 ]] || die 2 "$usage"
env=$1
action=deploy
if [[ $# -eq 2 ]]; then
    [[ $2 == --build-only ]] || die 2 "$usage"
    action=build
fi
case $env in
dev | test | prod) ;;
*) die 2 "unknown environment '$env' ($usage)" ;;
esac
definitions=controlm/zone-etl.json
descriptor=controlm/deploy/$env.json
[[ -f $descriptor ]] || die 2 "$descriptor is missing"
tag=$(release_tag)
prefix=$(release_prefix)
ctm=${CTM:-ctm}
command -v "$ctm" >/dev/null 2>&1 ||
    die 2 "the Control-M Automation API CLI ($ctm) is not installed: install ctm-cli from your Control-M, or set CTM"
python=${PYTHON:-python3}

# The images must be in the registry before Control-M may run them.
if [[ ${VERIFY_IMAGES:-1} == 1 ]]; then
    runtime=""
    if [[ -n ${CONTAINER_RUNTIME:-} ]] || command -v podman >/dev/null 2>&1 || command -v docker >/dev/null 2>&1; then
        runtime=$(container_runtime)
    fi
    if [[ -n $runtime ]] || command -v "${SKOPEO:-skopeo}" >/dev/null 2>&1; then
        for zone in "${ZONES[@]}"; do
            remote_exists "${runtime:-none}" "$prefix/$zone:$tag" ||
                die 2 "$prefix/$zone:$tag is not in the registry: run jules/stages/push.sh first"
        done
    else
        log "WARNING: neither a container runtime nor skopeo: not checking that the images are in the registry"
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
merged=$work/deploy-$env.json
"$python" - "$descriptor" "$merged" "$prefix" "$tag" <<'PY'
import json
import sys

source, target, prefix, tag = sys.argv[1:5]
with open(source, encoding="utf-8") as handle:
    descriptor = json.load(handle)
descriptor["DeployDescriptor"].append(
    {
        "Comment": "release images, set by jules/stages/deploy.sh",
        "Property": "$.Variables[*].*",
        "Replace": [{"__IMAGE_PREFIX__": prefix}, {"__IMAGE_TAG__": tag}],
    }
)
with open(target, "w", encoding="utf-8") as handle:
    json.dump(descriptor, handle, indent=2)
PY

ctm_args=()
if [[ -n ${CTM_ENV:-} ]]; then ctm_args+=(-e "$CTM_ENV"); fi
log "ctm $action $definitions $descriptor (+ images $prefix/<zone>:$tag)${CTM_ENV:+ on ctm environment $CTM_ENV}"
"$ctm" "$action" "$definitions" "$merged" "${ctm_args[@]}"
log "$action of folder zone-etl-daily to $env done: images $prefix/<zone>:$tag"
