#!/usr/bin/env bash
# The test command: set up (idempotent) and run the whole suite. Extra arguments go to pytest.
# The property tests (marker `properties`: hypothesis draws, CPU-bound) run in a second pytest on
# every core (pytest-xdist, one shard per worker); the rest runs serially, because it starts real
# servers whose fault tests must not compete for the CPU. Exit status: the first failure's.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test

status=0
.venv/bin/python -m pytest -m "not properties" "$@" || status=$?
# Exit 5 is "no test selected" (arguments that name only one of the two halves).
[ "$status" -eq 5 ] && status=0
properties=0
.venv/bin/python -m pytest -m properties -n "${AGENTGEN_TEST_WORKERS:-auto}" "$@" || properties=$?
[ "$properties" -eq 5 ] && properties=0
[ "$status" -ne 0 ] && exit "$status"
exit "$properties"
