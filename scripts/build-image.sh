#!/usr/bin/env bash
# Builds the `ranvier:test` container image from a statically linked release
# binary (FROM scratch: nothing is pulled). Used by the container tests.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
IMAGE=${RANVIER_IMAGE:-ranvier:test}
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target "$TARGET" -p ranvier-node --bin ranvier
context=target/image-context
rm -rf "$context" && mkdir -p "$context"
cp "target/$TARGET/release/ranvier" "$context/ranvier"
strip "$context/ranvier" 2>/dev/null || true
docker build --quiet -t "$IMAGE" -f tests/docker/Dockerfile "$context" >/dev/null
echo "build-image: $IMAGE built"
