# Developer entry points. Tests: ./dev test (or uv run pytest ...); see README.
.DEFAULT_GOAL := help
SHELL := /bin/bash

IMAGE ?= portfolio-operator:dev
BASE_IMAGE ?= python:3.11-slim-bookworm
CHART := charts/portfolio-operator
# The pinned helm that hack/kube-binaries.sh builds (the tests use the same one); HELM=helm for yours.
HELM ?= $(shell hack/kube-binaries.sh --print-dir 2>/dev/null)/helm

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: image
image: ## Build the operator/Dask image (IMAGE=..., BASE_IMAGE=...)
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

.PHONY: helm-lint
helm-lint: ## helm lint --strict and helm template the chart, with and without the dask-kubernetes toggle
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set daskKubernetesOperator.enabled=true
	$(HELM) lint --strict $(CHART) --set-json 'operator.watchNamespaces=["team-a","team-b"]'
	$(HELM) template portfolio-operator $(CHART) --namespace portfolio-system >/dev/null
	$(HELM) template portfolio-operator $(CHART) --namespace portfolio-system \
	  --set daskKubernetesOperator.enabled=true --set-json 'operator.watchNamespaces=["team-a"]' >/dev/null

.PHONY: chart-sync
chart-sync: ## Regenerate the CRD copies from their sources (operator's schema.py, installed dask-kubernetes)
	uv run python -m portfolio_operator.schema > manifests/crd.yaml
	cp manifests/crd.yaml $(CHART)/files/crds/portfolioanalyses.yaml
	dask_kubernetes="$$(uv run python -c 'import dask_kubernetes, pathlib; print(pathlib.Path(dask_kubernetes.__file__).parent)')" \
	  && cp "$$dask_kubernetes"/operator/deployment/helm/dask-kubernetes-operator/crds/*.yaml $(CHART)/files/dask-kubernetes-crds/
	version="$$(uv run python -c 'import importlib.metadata as m; print(m.version("dask-kubernetes"))')" \
	  && sed -i "s|^  portfolio-operator/dask-kubernetes-version: .*|  portfolio-operator/dask-kubernetes-version: \"$$version\"|" $(CHART)/Chart.yaml

.PHONY: test-chart
test-chart: ## The chart and image tests (helm template, the real API server, the Dockerfile)
	KUBEBUILDER_ASSETS="$$(hack/kube-binaries.sh --print-dir)" uv run pytest tests/chart

.PHONY: kind-e2e
kind-e2e: ## kind cluster + image + dask-kubernetes + chart + sample analysis (needs docker, kind, kubectl, helm)
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) hack/kind-e2e.sh

.PHONY: e2e
e2e: ## End to end on a real single-node cluster from host processes (root; see docs/e2e.md)
	hack/kube-binaries.sh --with-coredns >/dev/null
	uv run pytest -m e2e tests/e2e $(PYTEST_ARGS)
