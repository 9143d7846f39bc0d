#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time each (default 20 s;
# `scripts/fuzz.sh 300` for longer): the decoders of Raft log entries,
# segment frames and property files. A crash stops the script with the
# failing input saved under fuzz/artifacts/<target>/ (replay it with
# `cargo fuzz run <target> <file>` in fuzz/).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-${FUZZ_SECONDS:-20}}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
# cargo-fuzz passes the compiler -Z flags (coverage instrumentation); the
# stable compiler accepts them with this.
export RUSTC_BOOTSTRAP=1

for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  echo "fuzz: $target for ${seconds}s"
  # No sanitizer: the code forbids `unsafe`, so what is hunted is panics,
  # overflows (debug assertions on) and runaway memory.
  cargo fuzz run --sanitizer none --debug-assertions "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
done
