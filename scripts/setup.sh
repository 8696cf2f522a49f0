#!/usr/bin/env bash
# Set up agentgen in ./.venv (idempotent). With --test, also what the test suite needs: the test extras
# and the PostgreSQL server binaries (Debian package; needs root or sudo when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
fi
extras=tools
[ "$want_test" = 1 ] && extras=test
.venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[$extras]"

if [ "$want_test" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq postgresql git >/dev/null
fi
echo "agentgen is set up in .venv ($(.venv/bin/agentgen --version))"
