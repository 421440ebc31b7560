# Developer entry points. Tests: see README (uv run pytest ...).
.DEFAULT_GOAL := help
SHELL := /bin/bash

IMAGE ?= portfolio-operator:dev
BASE_IMAGE ?= python:3.11-slim-bookworm
CHART := charts/portfolio-operator
# helm on PATH, else the one hack/kube-binaries.sh builds.
HELM ?= $(shell command -v helm 2>/dev/null || echo "$$(hack/kube-binaries.sh --print-dir 2>/dev/null)/helm")

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
	$(HELM) template portfolio-operator $(CHART) --namespace portfolio-system >/dev/null
	$(HELM) template portfolio-operator $(CHART) --namespace portfolio-system \
	  --set daskKubernetesOperator.enabled=true --set 'operator.watchNamespaces={team-a,team-b}' >/dev/null

.PHONY: chart-sync
chart-sync: ## Refresh the chart's CRD copies from their sources (operator CRD, dask-kubernetes package)
	uv run python -m portfolio_operator.crd > $(CHART)/crds/portfolioanalyses.yaml
	cp "$$(uv run python -c 'import dask_kubernetes, pathlib; print(pathlib.Path(dask_kubernetes.__file__).parent)')"/operator/deployment/helm/dask-kubernetes-operator/crds/*.yaml \
	  $(CHART)/files/dask-kubernetes-crds/

.PHONY: kind-e2e
kind-e2e: ## kind cluster + image + dask-kubernetes + chart + sample analysis (needs docker, kind, kubectl, helm)
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) hack/kind-e2e.sh
