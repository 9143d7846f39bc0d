#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, for the operator's tests
# (no image or Go module can be downloaded here; Debian's `kubernetes`
# source package holds Kubernetes v1.20.2 with its Go dependencies).
#
#   scripts/k8s-env.sh build        build kube-apiserver, kube-controller-manager, kube-scheduler,
#                                   kubelet and the pod sandbox's `pause` once into
#                                   $RANVIER_K8S_CACHE (default /var/cache/ranvier-k8s)
#   scripts/k8s-env.sh start DIR    start etcd, the API server and the controller manager on
#                                   loopback with free ports; writes DIR/kubeconfig and DIR/pids
#   scripts/k8s-env.sh start DIR --node
#                                   the same on the docker0 address, plus a whole node: the
#                                   scheduler, the kubelet running pods on this Docker, pod DNS
#                                   (dnsmasq, kept in step with pods and Endpoints as CoreDNS
#                                   would) and hostPath PersistentVolumes for StatefulSets;
#                                   writes DIR/env (API_HOST, API_PORT) for in-cluster clients
#   scripts/k8s-env.sh stop DIR     stop what `start DIR` started (by PID), and the pods'
#                                   containers
#
# The recipe and its two fixes are in ../shared/K8S-TEST-ENV.md.
set -euo pipefail

CACHE=${RANVIER_K8S_CACHE:-/var/cache/ranvier-k8s}
VERSION=1.20.5+really1.20.2-1.1+deb12u1
BIN=$CACHE/bin

log() { echo "k8s-env: $*" >&2; }

build() {
  local built=1 tools=1
  for binary in kube-apiserver kube-controller-manager kube-scheduler kubelet pause; do
    [ -x "$BIN/$binary" ] || built=""
  done
  for tool in etcd dnsmasq socat jq; do
    command -v "$tool" >/dev/null || tools=""
  done
  if [ -z "$tools" ]; then
    log "installing etcd, and the node's tools (dnsmasq, socat for port-forward, jq) from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server etcd-client \
      dnsmasq-base socat jq curl openssl >/dev/null
  fi
  if [ -n "$built" ]; then
    log "already built in $BIN"
    return
  fi
  mkdir -p "$CACHE"
  local sources=/etc/apt/sources.list.d/ranvier-deb-src.sources
  if [ ! -f "$sources" ]; then
    # The first stanza of Debian's sources, as deb-src.
    awk 'BEGIN{RS=""} NR==1{print; exit}' /etc/apt/sources.list.d/debian.sources \
      | sed 's/^Types: deb$/Types: deb-src/' >"$sources"
  fi
  log "installing the build tools (Go, gcc) from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go rsync dpkg-dev \
    golang-github-modern-go-reflect2-dev gcc libc6-dev >/dev/null
  local work=$CACHE/work
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && apt-get source --download-only "kubernetes=$VERSION" >/dev/null \
    && dpkg-source -x kubernetes_*.dsc src >/dev/null)
  # reflect2 v1.0.1 (vendored) crashes the API server under Go >= 1.18.
  rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/reflect2"
  rm -f "$work/src/vendor/github.com/modern-go/reflect2/go.mod"
  # This Docker refuses a negative oom_score_adj, which dockershim gives
  # every pod sandbox (-998) and Guaranteed pods (-997): use 0.
  sed -i 's/defaultSandboxOOMAdj int = -998/defaultSandboxOOMAdj int = 0/' \
    "$work/src/pkg/kubelet/dockershim/docker_sandbox.go"
  sed -i 's/guaranteedOOMScoreAdj int = -997/guaranteedOOMScoreAdj int = 0/' "$work/src/pkg/kubelet/qos/policy.go"
  grep -q 'defaultSandboxOOMAdj int = 0' "$work/src/pkg/kubelet/dockershim/docker_sandbox.go" \
    && grep -q 'guaranteedOOMScoreAdj int = 0' "$work/src/pkg/kubelet/qos/policy.go" \
    || { log "the kubelet's oom_score_adj patch no longer applies"; exit 1; }
  log "building the control plane and the kubelet (about 6 minutes on 2 cores)"
  (cd "$work/src" && GOPATH=$work/src/.go CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local \
    HOME=$work/home make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet" \
    >"$work/build.log" 2>&1) || { tail -30 "$work/build.log" >&2; exit 1; }
  mkdir -p "$BIN"
  for binary in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    cp "$work/src/_output/bin/$binary" "$BIN/"
  done
  gcc -Os -static -o "$BIN/pause" "$work/src/build/pause/linux/pause.c"
  rm -rf "$work"
  log "built into $BIN"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local dir=$1 node=${2:-}
  [ -x "$BIN/kube-apiserver" ] || { log "not built: run '$0 build' first"; exit 1; }
  mkdir -p "$dir/pki"
  local etcd_port peer_port api_port host=127.0.0.1 controllers=$CONTROLLERS
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  if [ "$node" = --node ]; then
    # Pods reach the API server (and the DNS server) on the docker0 bridge.
    host=$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
    [ -n "$host" ] || host=$(ip -4 -o addr show docker0 | awk '{split($4, a, "/"); print a[1]; exit}')
    [ -n "$host" ] || { log "no docker0 address for the pods to reach"; exit 1; }
    controllers=$controllers,$NODE_CONTROLLERS
    printf 'API_HOST=%s\nAPI_PORT=%s\n' "$host" "$api_port" >"$dir/env"
  fi
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  echo 'admintoken,admin,admin-uid,"system:masters"' >"$dir/tokens.csv"
  : >"$dir/pids"
  etcd --name k --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" --initial-cluster "k=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync >"$dir/etcd.log" 2>&1 &
  echo $! >>"$dir/pids"
  "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" --bind-address="$host" \
    --secure-port="$api_port" --advertise-address="$host" --endpoint-reconciler-type=none \
    --kubelet-preferred-address-types=InternalIP \
    --cert-dir="$dir/pki" --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.0.0.0/24 \
    >"$dir/apiserver.log" 2>&1 &
  echo $! >>"$dir/pids"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$host:$api_port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: admintoken
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: default
current-context: local
EOF
  local ready=""
  for _ in $(seq 1 300); do
    if curl -sk -H 'Authorization: Bearer admintoken' "https://$host:$api_port/readyz" 2>/dev/null | grep -q '^ok$'; then
      ready=1; break
    fi
    sleep 0.2
  done
  [ -n "$ready" ] || { log "the API server did not become ready:"; tail -20 "$dir/apiserver.log" >&2; stop "$dir"; exit 1; }
  "$BIN/kube-controller-manager" --kubeconfig="$dir/kubeconfig" --leader-elect=false --port=0 --secure-port=0 \
    --controllers="$controllers" \
    --service-account-private-key-file="$dir/sa.key" --root-ca-file="$dir/pki/apiserver.crt" \
    >"$dir/controller-manager.log" 2>&1 &
  echo $! >>"$dir/pids"
  log "API server at https://$host:$api_port (kubeconfig $dir/kubeconfig)"
  if [ "$node" = --node ]; then
    start_node "$dir" "$host"
  fi
}

# The controllers of every start, and those a node's pods need besides.
CONTROLLERS=garbagecollector,namespace,serviceaccount,serviceaccount-token,statefulset
NODE_CONTROLLERS=nodelifecycle,endpoint,persistentvolume-binder,deployment,replicaset,job,cronjob
# hostPath PersistentVolumes offered to StatefulSets' claims.
VOLUMES=12

kc() { kubectl --kubeconfig="$1/kubeconfig" "${@:2}"; }

start_node() {
  local dir=$1 host=$2
  command -v dnsmasq >/dev/null || { log "dnsmasq is missing: run '$0 build'"; stop "$dir"; exit 1; }
  # The pod sandbox image the kubelet expects, built from the same tree.
  if ! docker image inspect k8s.gcr.io/pause:3.2 >/dev/null 2>&1; then
    local context=$dir/pause-image
    mkdir -p "$context" && cp "$BIN/pause" "$context/pause"
    printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$context/Dockerfile"
    docker build --quiet -t k8s.gcr.io/pause:3.2 "$context" >/dev/null 2>&1
  fi
  # Pod DNS: dnsmasq answers from a hosts file that dns_sync keeps in step.
  : >"$dir/hosts"
  dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$dir/hosts" --listen-address="$host" \
    --bind-interfaces --pid-file="$dir/dnsmasq.pid" --log-facility="$dir/dnsmasq.log" &
  echo $! >>"$dir/pids"
  "$BIN/kube-scheduler" --kubeconfig="$dir/kubeconfig" --leader-elect=false --port=0 \
    >"$dir/scheduler.log" 2>&1 &
  echo $! >>"$dir/pids"
  mkdir -p "$dir/kubelet" "$dir/kpki"
  "$BIN/kubelet" --kubeconfig="$dir/kubeconfig" --container-runtime=docker --cgroup-driver=cgroupfs \
    --fail-swap-on=false --root-dir="$dir/kubelet" --cert-dir="$dir/kpki" --hostname-override=node1 \
    --cluster-domain=cluster.local --cluster-dns="$host" --port="$(free_port)" --read-only-port=0 \
    --healthz-port=0 --cgroups-per-qos=false --enforce-node-allocatable= --image-gc-high-threshold=100 \
    --image-gc-low-threshold=99 --eviction-hard= --oom-score-adj=0 --address="$host" --node-ip="$host" \
    >"$dir/kubelet.log" 2>&1 &
  echo $! >>"$dir/pids"
  dns_sync "$dir" >"$dir/dns-sync.log" 2>&1 &
  echo $! >>"$dir/pids"
  for i in $(seq 1 "$VOLUMES"); do
    mkdir -p "$dir/volumes/pv-$i" && chmod 0777 "$dir/volumes/pv-$i"
    printf 'apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: local-pv-%s\nspec:\n' "$i"
    printf '  capacity:\n    storage: 2Gi\n  accessModes: ["ReadWriteOnce"]\n'
    printf '  persistentVolumeReclaimPolicy: Retain\n  hostPath:\n    path: %s\n    type: Directory\n---\n' \
      "$dir/volumes/pv-$i"
  done >"$dir/volumes.yaml"
  kc "$dir" apply -f "$dir/volumes.yaml" >/dev/null
  local ready=""
  for _ in $(seq 1 300); do
    if kc "$dir" get node node1 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null \
      | grep -q True && ! kc "$dir" get node node1 -o jsonpath='{.spec.taints}' | grep -q not-ready; then
      ready=1; break
    fi
    sleep 0.2
  done
  [ -n "$ready" ] || { log "the node did not become ready:"; tail -20 "$dir/kubelet.log" >&2; stop "$dir"; exit 1; }
  log "node1 ready (pods on Docker, DNS at $host)"
}

# Writes every pod's DNS name under its headless Service and every
# Service's name (to its endpoints' addresses) to the hosts file dnsmasq
# reads, and tells it on change.
dns_sync() {
  local dir=$1 filter
  filter='.items[] | if .kind == "Pod" then
      select(.status.podIP != null and .spec.hostname != null and .spec.subdomain != null)
      | "\(.status.podIP) \(.spec.hostname).\(.spec.subdomain).\(.metadata.namespace).svc.cluster.local"
    else .metadata as $m | (.subsets // [])[] | (.addresses // [])[]
      | "\(.ip) \($m.name).\($m.namespace).svc.cluster.local" end'
  while [ -f "$dir/pids" ]; do
    if kc "$dir" get pods,endpoints -A -o json 2>/dev/null | jq -r "$filter" | sort >"$dir/hosts.new" \
      && ! cmp -s "$dir/hosts.new" "$dir/hosts"; then
      mv "$dir/hosts.new" "$dir/hosts"
      kill -HUP "$(cat "$dir/dnsmasq.pid")" 2>/dev/null || true
    fi
    sleep 1
  done
}


stop() {
  local dir=$1
  [ -f "$dir/pids" ] || return 0
  tac "$dir/pids" | while read -r pid; do kill "$pid" 2>/dev/null || true; done
  tac "$dir/pids" | while read -r pid; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$dir/pids"
  # The pods' containers (dockershim names them k8s_…), once the kubelet
  # that made them is gone.
  if [ -f "$dir/env" ] && command -v docker >/dev/null; then
    docker ps -aq --filter name='^k8s_' | xargs -r docker rm -f >/dev/null 2>&1 || true
  fi
}

case ${1:-} in
  build) build ;;
  start) start "${2:?usage: $0 start DIR [--node]}" "${3:-}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) echo "usage: $0 build | start DIR [--node] | stop DIR" >&2; exit 2 ;;
esac
