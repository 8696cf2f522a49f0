#!/usr/bin/env bash
# The test command: set up (idempotent), then the suite in stages, each a pytest run; extra
# arguments go to every stage (a path selects within each; a stage that selects nothing passes).
#   1. quick     the CLI, spec, validators, the import check and the runtime's library tests: no
#                server, no project rendered whole (marker `renders`), on every core
#   2. parallel  whole projects rendered and installed (`renders`), the runtime's server tests
#                (`slow`) and the image build (`container`), on every core (one PostgreSQL
#                cluster per worker; tests dealt one by one, so that no long module is left last)
#   3. serial    the fault tests whose timing needs the CPU (`serial`: leases, stalls, outages),
#                one at a time
#   4. properties  hypothesis draws (CPU-bound), on every core
# `--quick` runs stage 1 only (the inner loop: a few minutes). The first failing stage ends the run
# with its status: a broken change fails in minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
if [ "${1:-}" = "--quick" ]; then
    quick=1
    shift
fi
./scripts/setup.sh --test

workers="${AGENTGEN_TEST_WORKERS:-auto}"
stage() {
    local name=$1
    shift
    echo "=== stage: $name"
    local status=0
    .venv/bin/python -m pytest "$@" || status=$?
    # Exit 5 is "no test selected" (arguments that name tests of other stages only).
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
        echo "=== stage $name failed ($status)" >&2
        exit "$status"
    fi
}

stage quick -m "not slow and not serial and not container and not properties and not renders" \
    -n "$workers" --dist loadfile "$@"
[ "$quick" = 1 ] && exit 0
stage parallel -m "(renders or slow or container) and not serial and not properties" \
    -n "$workers" --dist load "$@"
stage serial -m "serial and not properties" "$@"
stage properties -m properties -n "$workers" "$@"
