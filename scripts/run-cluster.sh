#!/usr/bin/env bash
# Starts a local three-node Ranvier cluster formed by autocluster alone, each
# node with its own data and log directories under .run/, and stops all three
# cleanly on Ctrl-C. Used by `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${RANVIER_BIN:-target/release/ranvier}
NODES=${RANVIER_NODES:-3}
RUN_DIR=${RUN_DIR:-.run}
TOKEN=${RANVIER_INTERNAL_TOKEN:-local-cluster-token}

[ -x "$BIN" ] || { echo "run-cluster: $BIN is missing; run 'make release' first" >&2; exit 1; }

pids=()
stop() {
  echo
  echo "run-cluster: stopping ${#pids[@]} nodes"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "run-cluster: stopped"
}
trap 'stop; exit 0' INT TERM

for i in $(seq 1 "$NODES"); do
  dir="$RUN_DIR/node$i"
  mkdir -p "$dir"
  (
    cd "$dir"
    exec "$OLDPWD/$BIN" \
      --set axoniq.axonserver.name="node$i" \
      --set axoniq.axonserver.hostname=localhost \
      --set axoniq.axonserver.internal-hostname=127.0.0.1 \
      --set axoniq.axonserver.port=$((8123 + i)) \
      --set server.port=$((8023 + i)) \
      --set axoniq.axonserver.internal-port=$((8223 + i)) \
      --set axoniq.axonserver.autocluster.first=127.0.0.1:8224 \
      --set axoniq.axonserver.accesscontrol.internal-token="$TOKEN" \
      >"node.out" 2>"node.log"
  ) &
  pids+=("$!")
done

for i in $(seq 1 "$NODES"); do
  out="$RUN_DIR/node$i/node.out"
  for _ in $(seq 1 300); do
    grep -q '^READY' "$out" 2>/dev/null && break
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
      echo "run-cluster: node$i failed to start; its log:" >&2
      cat "$RUN_DIR/node$i/node.log" >&2
      stop
      exit 1
    fi
    sleep 0.1
  done
done

echo "run-cluster: $NODES nodes formed by autocluster (first: 127.0.0.1:8224)"
for i in $(seq 1 "$NODES"); do
  echo "  node$i: clients connect to localhost:$((8123 + i)); HTTP http://localhost:$((8023 + i)); data in $RUN_DIR/node$i (log: $RUN_DIR/node$i/node.log)"
done
echo "run-cluster: administer it: target/release/ranvierctl replication-groups (or contexts, cluster, register-context -c orders -n node1,node2 -p node3, ...)"
echo "run-cluster: Ctrl-C stops the cluster"
wait
