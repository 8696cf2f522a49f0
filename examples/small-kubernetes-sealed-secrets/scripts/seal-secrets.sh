#!/usr/bin/env sh
# Seal secret values for Sealed Secrets, so that they can be committed:
#   scripts/seal-secrets.sh [ENV_FILE]     (default: .env; lines NAME=value, NAME a setting name)
# Only the cluster's sealed-secrets controller can decrypt the result. Needs kubectl and kubeseal, and
# access to the cluster (kubeseal fetches the controller's public key; or set SEALED_SECRETS_CERT).
set -eu
cd "$(dirname "$0")/.."
env_file=${1:-.env}
[ -f "$env_file" ] || { echo "no $env_file: put the secret values there (NAME=value lines)" >&2; exit 2; }
namespace=triage-agent
secret=triage-agent-secrets
cert_args=""
[ -n "${SEALED_SECRETS_CERT:-}" ] && cert_args="--cert $SEALED_SECRETS_CERT"

# Secret keys are the settings' names in lower case (the service reads /run/secrets/<name>).
lowered=$(mktemp)
trap 'rm -f "$lowered"' EXIT
grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$env_file" | awk -F= '{ key=tolower($1); sub(/^[^=]*=/, ""); print key "=" $0 }' > "$lowered"

seal() {
    # shellcheck disable=SC2086
    kubectl create secret generic "$secret" --namespace "$namespace" --from-env-file="$lowered" \
        --dry-run=client -o json | kubeseal --format "$1" $cert_args
}
seal yaml > deploy/kubernetes/base/secrets.yaml
echo "sealed $(wc -l < "$lowered") value(s) into deploy/kubernetes/base/secrets.yaml"
