# Ranvier: the verbs. `make run` starts a local three-node cluster; `make test` runs every test.
CARGO ?= cargo
RUN_DIR ?= .run/single
# Client gRPC, HTTP ports of `make run` (Axon Server's defaults).
RUN_PORT ?= 8124
RUN_HTTP_PORT ?= 8024

.PHONY: build release run run-single test image test-unit test-black-box bench fuzz crds fmt fmt-check clippy verify clean

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p ranvier-node --bins

## A local three-node cluster, formed by autocluster; Ctrl-C stops it cleanly.
run: release
	./scripts/run-cluster.sh

## One standalone node with its data in $(RUN_DIR); Ctrl-C stops it cleanly.
run-single: release
	@mkdir -p $(RUN_DIR)
	@echo "ranvier: data in $(abspath $(RUN_DIR))/data"
	@echo "ranvier: clients connect to localhost:$(RUN_PORT) (gRPC, Axon protocol); HTTP on http://localhost:$(RUN_HTTP_PORT)"
	cd $(RUN_DIR) && exec $(abspath target/release/ranvier) \
		--set axoniq.axonserver.port=$(RUN_PORT) --set server.port=$(RUN_HTTP_PORT) \
		--set axoniq.axonserver.hostname=localhost

## Every test: unit and property tests, then black-box tests against real node
## processes, a full disk on a tmpfs where a mount is allowed (root), node
## containers when Docker is here (partitions, pods, the operator's rendered
## StatefulSet), and the operator against a real API server and on a whole
## single-node Kubernetes once scripts/k8s-env.sh build has built them, and
## the console in headless Chromium once scripts/install-browser.sh has run.
test:
	$(CARGO) build -p ranvier-node --bins
	@if docker info >/dev/null 2>&1; then \
		./scripts/build-image.sh all; \
	else \
		echo "make test: *** Docker is not available: the container tests (tests/tests/partition.rs) are SKIPPED ***"; \
	fi
	@skip=1; docker info >/dev/null 2>&1 && skip=0; \
	probe=$$(mktemp -d); mount_skip=1; \
	if mount -t tmpfs -o size=1m tmpfs $$probe 2>/dev/null; then umount $$probe; mount_skip=0; else \
		echo "make test: *** cannot mount a tmpfs (needs root): the full-disk test (tests/tests/disk.rs) is SKIPPED ***"; \
	fi; rmdir $$probe; \
	k8s_skip=0; if [ ! -x "$${RANVIER_K8S_CACHE:-/var/cache/ranvier-k8s}/bin/kubelet" ]; then k8s_skip=1; \
		echo "make test: *** no Kubernetes built (scripts/k8s-env.sh build): the API server test (operator/tests/apiserver.rs) and the end-to-end test (tests/tests/kubernetes.rs) are SKIPPED ***"; \
	fi; \
	helm_skip=0; if ! "$${RANVIER_TOOLS:-/var/cache/ranvier-tools}/helm" version >/dev/null 2>&1 && ! helm version >/dev/null 2>&1; then helm_skip=1; \
		echo "make test: *** helm not installed (scripts/install-helm.sh): the chart tests (operator/tests/charts.rs) are SKIPPED ***"; \
	fi; \
	browser_skip=0; if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then browser_skip=1; \
		echo "make test: *** no chromium / chromedriver (scripts/install-browser.sh): the console's browser test (tests/tests/browser.rs) is SKIPPED ***"; \
	fi; \
	export RANVIER_SKIP_CONTAINER_TESTS=$$skip RANVIER_SKIP_MOUNT_TESTS=$$mount_skip RANVIER_SKIP_K8S_TESTS=$$k8s_skip RANVIER_SKIP_HELM_TESTS=$$helm_skip RANVIER_SKIP_BROWSER_TESTS=$$browser_skip; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "make test: cargo-nextest not found, using cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## The container images (static binaries, FROM scratch): ranvier:test (the node,
## also used by the container tests) and ranvier-operator:test (the operator).
image:
	./scripts/build-image.sh all

## Regenerates crds/yaml/crds.yaml from the ranvier-crds types (a test fails when it drifts).
crds:
	RANVIER_UPDATE_CRDS=1 $(CARGO) test -p ranvier-crds --test crds committed_crd_yaml_matches_the_types

## The figures of the README's performance table (release build, fsync on).
## Every fuzz target (Raft entries, segment frames, property files) for
## FUZZ_SECONDS each; installs cargo-fuzz when missing.
FUZZ_SECONDS ?= 20
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)

bench:
	$(CARGO) build --release -p ranvier-node --bins
	$(CARGO) bench -p ranvier-tests --bench node

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Read-only gate: formatting, lints, tests.
verify: fmt-check clippy test

clean:
	$(CARGO) clean
	rm -rf .run
