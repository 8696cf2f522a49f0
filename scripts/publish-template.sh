#!/usr/bin/env bash
# Publish the template's released history (every v* tag's templates/ tree, the same commits the wheel
# bundles) to the template repository that generated projects record as _src_path, so plain
# `copier update` works there. Usage: scripts/publish-template.sh [URL]
set -euo pipefail
cd "$(dirname "$0")/.."
url="${1:-https://github.com/agentgen/agentgen-template.git}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/python - "$work/history.bundle" <<'PY'
import sys
from pathlib import Path

from agentgen.history import build_history

tags = build_history(Path("."), Path(sys.argv[1]))
if not tags:
    sys.exit("no v* tags: nothing to publish")
print("history:", " ".join(tags))
PY
git clone --quiet --mirror "$work/history.bundle" "$work/template.git"
latest="$(git -C "$work/template.git" tag --list 'v*' --sort=-version:refname | head -n 1)"
git -C "$work/template.git" push --tags "$url"
git -C "$work/template.git" push "$url" "refs/tags/$latest^{commit}:refs/heads/main"
