#!/usr/bin/env bash
# Re-render every examples/NAME.yml into examples/NAME/ (validated, like `agentgen new`).
# Run after changing the template; tests/test_examples.py fails while a rendering is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
agentgen="${AGENTGEN:-.venv/bin/agentgen}"
for config in examples/*.yml; do
    out="${config%.yml}"
    rm -rf "$out"
    "$agentgen" render --config "$config" --out "$out" >/dev/null
    echo "rendered $out"
done
