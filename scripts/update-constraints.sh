#!/usr/bin/env bash
# Regenerate templates/project/constraints.txt: every transitive dependency of every variant of the
# generated service (all providers, secrets backends, Redis, dev and sentry extras), pinned for
# Python 3.11-3.13. Generated images install with `pip install -c constraints.txt .`.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for variant in "openai vault" "anthropic aws-secrets-manager"; do
    set -- $variant
    .venv/bin/agentgen new "$work/$1" --no-input --no-git --name "v-$1" --scale large \
        --secrets "$2" --target compose >/dev/null
    # the agent's dependencies and the server's (runtime/), with every extra of both
    .venv/bin/python - "$work/$1/pyproject.toml" "$work/$1/runtime/pyproject.toml" \
        >>"$work/requirements.in" <<'PY'
import sys, tomllib
for path in sys.argv[1:]:
    project = tomllib.load(open(path, "rb"))["project"]
    extras = project.get("optional-dependencies", {}).values()
    for dep in project["dependencies"] + [d for ds in extras for d in ds]:
        print(dep)
PY
done
sort -u "$work/requirements.in" -o "$work/requirements.in"
{
    echo "# Pinned versions of every dependency the generated service can have (all variants),"
    echo "# for Python 3.11-3.13. In a generated project, scripts/lock.sh re-pins them for its own pyproject.toml."
    .venv/bin/uv pip compile --quiet --universal --python-version 3.11 --no-header \
        --no-annotate "$work/requirements.in"
} > templates/project/constraints.txt
echo "wrote templates/project/constraints.txt ($(grep -c '==' templates/project/constraints.txt) pins)"
