# The commands people type. `make demo` and `make test` install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
TOOLS := .tools
VENV := $(TOOLS)/venv
K8S_VERSION ?= 1.32.0
OUT := out
KUBECTL := $(TOOLS)/bin/kubectl
RELEASE := $(abspath $(or $(CARGO_TARGET_DIR),target))/release

.PHONY: help demo test lint fmt clippy unit objects-check browser-test crds crds-check chart-check dashboards deny sbom images image-check bench bench-media bench-operator fuzz e2e chaos build toolchain tools clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

demo: toolchain ## Simulate a ministry's day on the bundled scenario; writes out/ministry-day.svg
	$(CARGO) run --quiet --release -p ruche-operator -- simulate ministry-day --chart $(OUT)/ministry-day.svg

# CI builds once from scratch: incremental caches would only add gigabytes to its disk.
test: export CARGO_INCREMENTAL ?= 0
test: toolchain tools lint deny unit objects-check browser-test crds-check chart-check image-check e2e ## Everything CI runs: format, lints, licences, unit/property/integration tests, a real-browser meeting, CRD and chart checks, the images built and run, the e2e suite (on the cluster RUCHE_E2E_KUBECONFIG names)
	@echo "make test: all checks passed"

lint: fmt clippy ## cargo fmt --check and clippy with -D warnings

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## Unit, property and integration tests (benches run once, as smoke tests); the e2e suite skips here
	@mkdir -p $(OUT)
	@# The cluster scenarios run once, in `make e2e`.
	env -u RUCHE_E2E_KUBECONFIG $(CARGO) test --workspace --all-targets --locked 2>&1 | tee $(OUT)/unit.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "unit: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' $(OUT)/unit.log

browser-test: toolchain ## Two headless Chromium pages meet on ruche-media-node (installs Chromium and playwright-core)
	CARGO=$(CARGO) media-node/browser-test/run.sh

objects-check: tools ## Validate the objects the operator builds (rendered by the unit tests) against Kubernetes' schemas
	@test -n "$$(ls $(OUT)/rendered/*.yaml 2>/dev/null)" || { echo "no rendered objects in $(OUT)/rendered: run make unit first" >&2; exit 1; }
	$(VENV)/bin/kubernetes-validate --kubernetes-version $(K8S_VERSION) --strict --quiet $(OUT)/rendered/*.yaml
	@echo "$(OUT)/rendered: $$(ls $(OUT)/rendered/*.yaml | wc -l) objects valid for Kubernetes $(K8S_VERSION)"

crds: ## Regenerate crds/yaml (and the Helm chart's copy) from the Rust types
	$(CARGO) run --quiet -p ruche-crds --bin crdgen -- crds/yaml
	$(CARGO) run --quiet -p ruche-crds --bin crdgen -- charts/ruche/files/crds

deny: $(TOOLS)/bin/cargo-deny ## Licences (permissive only), banned crates and sources of every dependency (deny.toml)
	$(TOOLS)/bin/cargo-deny --locked check licenses bans sources

$(TOOLS)/bin/cargo-deny:
	$(CARGO) install --locked --quiet cargo-deny@0.20.2 --root $(abspath $(TOOLS))

sbom: $(TOOLS)/bin/cargo-cyclonedx ## CycloneDX SBOMs of the shipped binaries (ruche-operator, kubectl-ruche, ruche-media-node) and, after make images, of each image into out/sbom
	@mkdir -p $(OUT)/sbom
	PATH=$(abspath $(TOOLS))/bin:$$PATH $(CARGO) cyclonedx --format json --describe binaries --no-build-deps -q
	@for bom in operator/ruche-operator_bin operator/kubectl-ruche_bin media-node/ruche-media-node_bin; do mv $$bom.cdx.json $(OUT)/sbom/; done
	@rm -f crds/*_bin.cdx.json e2e/*_bin.cdx.json
	@# One per image too (its Debian packages and binaries), from the archives `make images` wrote.
	@if [ -f $(OUT)/images/ruche-operator.oci.tar ] && [ -f $(OUT)/images/ruche-media-node.oci.tar ]; then \
		python3 scripts/image_sbom.py --out $(OUT)/sbom $(OUT)/images/ruche-operator.oci.tar $(OUT)/images/ruche-media-node.oci.tar; \
	else \
		echo "sbom: no image archives in $(OUT)/images: run make images for the images' SBOMs"; \
	fi
	@for bom in $(OUT)/sbom/*.cdx.json; do python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(sys.argv[1] + ": CycloneDX " + b["specVersion"] + ", " + str(len(b.get("components", []))) + " components")' $$bom; done

$(TOOLS)/bin/cargo-cyclonedx:
	$(CARGO) install --locked --quiet cargo-cyclonedx@0.5.9 --root $(abspath $(TOOLS))

images: toolchain ## Operator and media node images from Debian packages (mmdebstrap, buildah; no registry): out/images/*.oci.tar
	CARGO=$(CARGO) OUT=$(OUT) scripts/images.sh

image-check: images ## Unpack each image without a container runtime, check its config and labels, run its binaries in it (a media node until /readyz)
	OUT=$(OUT) scripts/image-check.sh

dashboards: tools ## Regenerate the Grafana dashboards (charts/ruche/files/dashboards) from charts/ruche/dashboards/dashboards.yaml
	$(VENV)/bin/python scripts/dashboards.py write

chart-check: tools ## Helm chart: helm lint --strict, helm template of each value set validated against Kubernetes' schemas, bad values refused by values.schema.json, alerts unit-tested with promtool
	scripts/install-debian-packages.sh promtool prometheus
	HELM=$(TOOLS)/bin/helm VALIDATE=$(VENV)/bin/kubernetes-validate K8S_VERSION=$(K8S_VERSION) OUT=$(OUT) scripts/chart-check.sh

crds-check: tools ## Render manifests/ with kustomize (CRDs, RBAC, operator) and validate it against Kubernetes' schemas
	@mkdir -p $(OUT)
	$(KUBECTL) kustomize manifests/crds > $(OUT)/crds.yaml
	@test "$$(grep -c '^kind: CustomResourceDefinition' $(OUT)/crds.yaml)" = 3 || { echo "manifests/crds must render the 3 CRDs" >&2; exit 1; }
	$(VENV)/bin/kubernetes-validate --kubernetes-version $(K8S_VERSION) --strict --quiet $(OUT)/crds.yaml
	@echo "manifests/crds: 3 valid CustomResourceDefinitions for Kubernetes $(K8S_VERSION)"
	$(KUBECTL) kustomize manifests > $(OUT)/manifests.yaml
	$(VENV)/bin/kubernetes-validate --kubernetes-version $(K8S_VERSION) --strict --quiet $(OUT)/manifests.yaml
	@echo "manifests: $$(grep -c '^kind:' $(OUT)/manifests.yaml) valid objects (CRDs, RBAC, operator Deployment) for Kubernetes $(K8S_VERSION)"

bench: toolchain ## Placement throughput (2,000 nodes, 50,000 rooms); operator state memory (1,000 nodes, 20,000 rooms)
	$(CARGO) bench -p ruche-operator --bench placement
	$(CARGO) bench -p ruche-operator --bench footprint

bench-media: toolchain ## Forwarding, ruche-media-node vs Janus under one load: packets per CPU-second, latency, memory (installs janus)
	CARGO=$(CARGO) media-node/benches/run-forward.sh

bench-operator: toolchain ## On the cluster RUCHE_E2E_KUBECONFIG names: created->scheduled p50/p99 at 100 rooms/s, a burst of 2,000, API writes per placement, operator CPU and memory with 1,000 nodes and 20,000 rooms
	@mkdir -p $(OUT)
	@# Release builds of what is measured; the media nodes are admin API stand-ins. The bench
	@# driver shares the release build (the bench profile would build every dependency again).
	$(CARGO) build --release --locked -p ruche-operator -p ruche-e2e --bins
	{ RUCHE_OPERATOR_BIN=$(RELEASE)/ruche-operator RUCHE_ADMIN_STAND_IN_BIN=$(RELEASE)/ruche-admin-stand-in \
		$(CARGO) bench --locked --profile release -p ruche-e2e --bench operator; echo $$? > $(OUT)/bench-operator.rc; } 2>&1 | tee $(OUT)/bench-operator.log
	@test "$$(cat $(OUT)/bench-operator.rc)" = 0 || { echo "make bench-operator: FAILED (see $(OUT)/bench-operator.log)" >&2; exit 1; }
	@if grep -q 'SKIPPED (no cluster)' $(OUT)/bench-operator.log; then \
		echo "make bench-operator: SKIPPED (no cluster): $$(grep -m1 -o 'SKIPPED (no cluster): .*' $(OUT)/bench-operator.log | sed 's/^SKIPPED (no cluster): //')"; \
	fi

e2e: toolchain tools ## End-to-end suite on the cluster RUCHE_E2E_KUBECONFIG names (never KUBECONFIG's); says SKIPPED and why without one; with RUCHE_E2E_AUDIT_LOG, the least-privilege check of the operator's RBAC
	@mkdir -p $(OUT)
	@# The workspace's test build (one feature resolution) also links both binaries.
	$(CARGO) test --workspace --all-targets --locked --no-run
	@# tests/helm.rs scrapes the operators and media nodes with Debian's Prometheus.
	scripts/install-debian-packages.sh prometheus prometheus
	@# The suite's exit status, not tee's, decides.
	@# Every test binary of ruche-e2e, one after the other: tests/install.rs installs a
	@# cluster-wide operator with kubectl apply -k manifests, which must not overlap tests/e2e.rs.
	{ RUCHE_KUBECTL=$(abspath $(KUBECTL)) RUCHE_HELM=$(abspath $(TOOLS))/bin/helm RUCHE_HELM3=$(abspath $(TOOLS))/bin/helm3 $(CARGO) test --locked -p ruche-e2e -- --nocapture; echo $$? > $(OUT)/e2e.rc; } 2>&1 | tee $(OUT)/e2e.log
	@test "$$(cat $(OUT)/e2e.rc)" = 0 || { echo "make e2e: FAILED (see $(OUT)/e2e.log)" >&2; exit 1; }
	@if grep -q 'SKIPPED (no cluster)' $(OUT)/e2e.log; then \
		echo "make e2e: SKIPPED (no cluster): $$(grep -m1 -o 'SKIPPED (no cluster): .*' $(OUT)/e2e.log | sed 's/^SKIPPED (no cluster): //')"; \
	else \
		echo "make e2e: every scenario passed against the cluster of RUCHE_E2E_KUBECONFIG=$${RUCHE_E2E_KUBECONFIG:-}"; \
	fi
	@# Least privilege, from the audit log of the run (a control plane started by scripts/audited-k8s.sh).
	@if [ -n "$${RUCHE_E2E_AUDIT_LOG:-}" ]; then \
		$(CARGO) run --quiet --locked -p ruche-e2e --bin least-privilege -- "$$RUCHE_E2E_AUDIT_LOG" | tee $(OUT)/least-privilege.log; \
	else \
		echo "make e2e: least privilege not checked: RUCHE_E2E_AUDIT_LOG names no audit log (start the cluster with scripts/audited-k8s.sh DIR)"; \
	fi

fuzz: toolchain ## Coverage-guided fuzzing of every outside input (libFuzzer, stable toolchain), FUZZ_SECONDS (600) per target; FUZZ_MERGE=1 keeps what is new in fuzz/corpus
	CARGO=$(CARGO) scripts/fuzz.sh

chaos: toolchain ## Faults on a live fleet with WebRTC calls, on a control plane of its own (API server and etcd stopped, leader killed mid-rollout and mid-migration, nodes hung, a zone killed, 1,000 rooms at once...): a table per fault of rooms affected, time to recover, rooms lost
	CARGO=$(CARGO) OUT=$(OUT) scripts/chaos.sh

build: toolchain ## Release build of the binaries
	$(CARGO) build --release --workspace --exclude ruche-fuzz --locked

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

tools: $(VENV)/bin/kubernetes-validate $(KUBECTL) $(TOOLS)/bin/helm3

$(KUBECTL) $(TOOLS)/bin/helm3:
	scripts/install-kube-tools.sh $(TOOLS)/bin

$(VENV)/bin/kubernetes-validate:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0

clean:
	$(CARGO) clean
	rm -rf $(TOOLS) $(OUT)
