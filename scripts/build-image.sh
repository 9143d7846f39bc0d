#!/usr/bin/env bash
# Builds container images from statically linked release binaries (FROM
# scratch: nothing is pulled).
#   scripts/build-image.sh [node|operator|all]   (default: node)
# node:     `ranvier:test` (RANVIER_IMAGE), the node and `ranvierctl` (the operator's backup
#           and restore Jobs run it); used by the container tests
# operator: `ranvier-operator:test` (RANVIER_OPERATOR_IMAGE), the operator
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
WHICH=${1:-node}

build() { # package image dockerfile binary...
  local package=$1 image=$2 dockerfile=$3
  shift 3
  local bins=() binary
  for binary in "$@"; do bins+=(--bin "$binary"); done
  RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target "$TARGET" -p "$package" "${bins[@]}"
  local context=target/image-context-$1
  rm -rf "$context" && mkdir -p "$context"
  for binary in "$@"; do
    cp "target/$TARGET/release/$binary" "$context/$binary"
    strip "$context/$binary" 2>/dev/null || true
  done
  docker build --quiet -t "$image" -f "$dockerfile" "$context" >/dev/null
  echo "build-image: $image built"
}

case $WHICH in
  node | all) build ranvier-node "${RANVIER_IMAGE:-ranvier:test}" tests/docker/Dockerfile ranvier ranvierctl ;;&
  operator | all) build ranvier-operator "${RANVIER_OPERATOR_IMAGE:-ranvier-operator:test}" operator/Dockerfile ranvier-operator ;;
  node | operator | all) ;;
  *) echo "usage: $0 [node|operator|all]" >&2; exit 2 ;;
esac
