#!/usr/bin/env bash
# Builds container images from statically linked release binaries (FROM
# scratch: nothing is pulled).
#   scripts/build-image.sh [node|operator|all]   (default: node)
# node:     `ranvier:test` (RANVIER_IMAGE), the node; used by the container tests
# operator: `ranvier-operator:test` (RANVIER_OPERATOR_IMAGE), the operator
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
WHICH=${1:-node}

build() { # package binary image dockerfile
  local package=$1 binary=$2 image=$3 dockerfile=$4
  RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target "$TARGET" -p "$package" --bin "$binary"
  local context=target/image-context-$binary
  rm -rf "$context" && mkdir -p "$context"
  cp "target/$TARGET/release/$binary" "$context/$binary"
  strip "$context/$binary" 2>/dev/null || true
  docker build --quiet -t "$image" -f "$dockerfile" "$context" >/dev/null
  echo "build-image: $image built"
}

case $WHICH in
  node | all) build ranvier-node ranvier "${RANVIER_IMAGE:-ranvier:test}" tests/docker/Dockerfile ;;&
  operator | all) build ranvier-operator ranvier-operator "${RANVIER_OPERATOR_IMAGE:-ranvier-operator:test}" operator/Dockerfile ;;
  node | operator | all) ;;
  *) echo "usage: $0 [node|operator|all]" >&2; exit 2 ;;
esac
