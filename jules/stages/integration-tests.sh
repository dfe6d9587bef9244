#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The slow tests: embedded PostgreSQL, the whole pipeline, CockroachDB and the containers (each skips
# with its reason when its engine is absent). Coverage adds to what unit-tests.sh recorded in the same
# workspace, and the 80% threshold of pyproject.toml is enforced on the total.
#
#   jules/stages/integration-tests.sh [pytest args...]
#
# Environment: INTEGRATION_MARKERS (the pytest -m expression), PYTEST (default .venv/bin/pytest).
set -euo pipefail
export STAGE=integration-tests
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$ROOT"

pytest=${PYTEST:-$ROOT/.venv/bin/pytest}
[[ -x $pytest ]] || die 2 "$pytest not found: run make install first"
markers=${INTEGRATION_MARKERS:-integration or e2e or cockroach or containers}
if ! compgen -G '.coverage*' >/dev/null; then
    log "WARNING: no coverage data from unit-tests.sh in this workspace: the total covers these tests only"
fi
log "pytest -m '$markers'"
"$pytest" -m "$markers" -p no:cacheprovider --cov --cov-append --cov-report=term "$@"
