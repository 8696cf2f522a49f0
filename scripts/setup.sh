#!/usr/bin/env bash
# Set up agentgen in ./.venv (idempotent): agentgen, then every external validator it runs
# (scripts/install-validators.sh). With --test, also what the test suite needs: the test extras, the
# runtime (agentgen-runtime, editable), the PostgreSQL server binaries, Redis, make, podman and
# debootstrap (Debian packages; root or sudo when missing).
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
if [ "$want_test" = 1 ]; then
    # agentgen-runtime (the server generated projects run), tested directly from its source with
    # the versions generated images pin.
    .venv/bin/uv pip install --quiet --python .venv/bin/python \
        -c templates/project/constraints.txt -e "templates/project/runtime[redis,vault,aws]"
fi

missing=""
command -v git >/dev/null || missing="$missing git"
command -v npm >/dev/null || missing="$missing nodejs npm"
command -v unzip >/dev/null || missing="$missing unzip"
if [ "$want_test" = 1 ]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
    command -v redis-server >/dev/null || missing="$missing redis-server"
    command -v make >/dev/null || missing="$missing make"
    # the container test builds the generated image and runs it with `podman kube play`
    for tool in podman buildah runc debootstrap; do
        command -v "$tool" >/dev/null || missing="$missing $tool"
    done
fi
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo apt-get install -y -qq $missing >/dev/null
fi
./scripts/install-validators.sh
echo "agentgen is set up in .venv ($(.venv/bin/agentgen --version))"
