#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Scan the three zone images for known vulnerabilities (HIGH and CRITICAL with a fix fail the stage).
#
#   jules/stages/scan.sh [TAG]          TAG: default IMAGE_TAG or git HEAD
#
# Uses trivy, else grype (SCANNER=trivy|grype to choose). Each image is saved to an archive with the
# container runtime and the archive is scanned, so podman and docker work alike. Without a scanner the
# stage says it cannot scan and fails, unless ALLOW_NO_SCANNER=1 (then it only warns).
#
# Environment: CONTAINER_RUNTIME, SCANNER, SCAN_SEVERITY (trivy, default HIGH,CRITICAL), GRYPE_FAIL_ON
# (grype, default high), ALLOW_NO_SCANNER. The scanners' databases come from their mirrors (set
# TRIVY_DB_REPOSITORY / GRYPE_DB_UPDATE_URL to the internal mirror on the build agents).
set -euo pipefail
export STAGE=scan
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

if [[ $# -ge 1 ]]; then
    tag=$1
    [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die 2 "'$tag' is not a valid image tag"
else
    tag=$(release_tag)
fi

scanner=${SCANNER:-}
if [[ -z $scanner ]]; then
    if command -v trivy >/dev/null 2>&1; then
        scanner=trivy
    elif command -v grype >/dev/null 2>&1; then
        scanner=grype
    fi
fi
if [[ -z $scanner ]]; then
    if [[ ${ALLOW_NO_SCANNER:-0} == 1 ]]; then
        log "WARNING: cannot scan: neither trivy nor grype is installed; the images are NOT scanned (ALLOW_NO_SCANNER=1)"
        exit 0
    fi
    die 1 "cannot scan: neither trivy nor grype is installed (install one, or set ALLOW_NO_SCANNER=1 to skip on purpose)"
fi
command -v "$scanner" >/dev/null 2>&1 || die 2 "SCANNER=$scanner is not on PATH"
runtime=$(container_runtime)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for zone in "${ZONES[@]}"; do
    image="$LOCAL_IMAGE_PREFIX/$zone:$tag"
    archive="$work/$zone.tar"
    log "scanning $image with $scanner"
    "$runtime" save -o "$archive" "$image" || die 2 "cannot save $image: run jules/stages/build.sh $tag first"
    case $(basename "$scanner") in
    trivy)
        "$scanner" image --input "$archive" --exit-code 1 --ignore-unfixed --no-progress \
            --severity "${SCAN_SEVERITY:-HIGH,CRITICAL}" || failed+=("$image")
        ;;
    grype)
        "$scanner" "docker-archive:$archive" --fail-on "${GRYPE_FAIL_ON:-high}" || failed+=("$image")
        ;;
    *) die 2 "unknown scanner $scanner (trivy or grype)" ;;
    esac
    rm -f "$archive"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    die 1 "vulnerabilities found in: ${failed[*]}"
fi
log "no findings at or above the threshold in ${#ZONES[@]} images ($tag)"
