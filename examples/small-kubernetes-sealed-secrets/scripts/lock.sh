#!/usr/bin/env sh
# Re-pin constraints.txt (every transitive dependency, for Python 3.11 and later)
# after changing the dependencies in pyproject.toml, or after an agentgen update changed runtime/'s:
# your project's and the server's dependencies together. Needs uv (pip install uv==0.13.9) and the package index.
set -eu
cd "$(dirname "$0")/.."
{
    echo "# Pinned versions of every dependency of this service. Refresh with scripts/lock.sh."
    uv pip compile --quiet --universal --python-version 3.11 --all-extras \
        --no-header --no-annotate pyproject.toml runtime/pyproject.toml
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt updated"
