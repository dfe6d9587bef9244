#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The fast tests: everything but the tests that need a database, the whole pipeline, CockroachDB or
# containers. Coverage is recorded (no threshold here) and completed by integration-tests.sh, which
# enforces the 80% threshold on the two stages together.
#
#   jules/stages/unit-tests.sh [pytest args...]
#
# Environment: UNIT_MARKERS (the pytest -m expression), PYTEST (default .venv/bin/pytest).
set -euo pipefail
export STAGE=unit-tests
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$ROOT"

pytest=${PYTEST:-$ROOT/.venv/bin/pytest}
[[ -x $pytest ]] || die 2 "$pytest not found: run make install first"
markers=${UNIT_MARKERS:-not integration and not e2e and not cockroach and not containers}
rm -f .coverage .coverage.*
log "pytest -m '$markers'"
"$pytest" -m "$markers" -p no:cacheprovider --cov --cov-report= --cov-fail-under=0 "$@"
