#!/usr/bin/env bash
# End to end on kind: create a cluster, build and load the image, install the dask-kubernetes
# operator and this chart, apply a sample PortfolioAnalysis, wait until it is Complete, print its
# status, and delete the cluster (also on failure; KEEP_CLUSTER=1 keeps it for debugging).
#
# Needs docker (with a running engine), kind, kubectl and helm on PATH. `make kind-e2e` runs it.
#
# Environment:
#   CLUSTER_NAME   kind cluster name                       (portfolio-e2e)
#   IMAGE          image to build and load, repo:tag       (portfolio-operator:kind-e2e)
#   BASE_IMAGE     Dockerfile's BASE_IMAGE build argument  (python:3.11-slim-bookworm)
#   SAMPLE         PortfolioAnalysis manifest to apply     (manifests/samples/small-portfolio.yaml)
#   DASK_OPERATOR  chart: the chart's daskKubernetesOperator toggle (offline-friendly);
#                  upstream: upstream's chart from https://helm.dask.org          (chart)
#   TIMEOUT        seconds to wait for the analysis         (900)
#   KEEP_CLUSTER   1: do not delete the cluster at the end  (0)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-portfolio-e2e}"
IMAGE="${IMAGE:-portfolio-operator:kind-e2e}"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim-bookworm}"
SAMPLE="${SAMPLE:-manifests/samples/small-portfolio.yaml}"
DASK_OPERATOR="${DASK_OPERATOR:-chart}"
TIMEOUT="${TIMEOUT:-900}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
RELEASE=portfolio-operator
NAMESPACE=portfolio-system
CONTEXT="kind-$CLUSTER_NAME"

log() { echo "[kind-e2e $(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Inputs first (cheap, and a typo should not cost a cluster), then the tools.
[[ "$IMAGE" == *:* && "${IMAGE##*:}" != */* ]] || die "IMAGE='$IMAGE' needs an explicit tag, e.g. portfolio-operator:kind-e2e"
[[ "${IMAGE##*:}" != latest ]] || die "IMAGE must not use the tag 'latest' (kind pods would try to pull it)"
[[ -f "$ROOT/$SAMPLE" ]] || die "sample $SAMPLE not found under $ROOT"
case "$DASK_OPERATOR" in chart|upstream) ;; *) die "DASK_OPERATOR must be 'chart' or 'upstream', not '$DASK_OPERATOR'" ;; esac
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT='$TIMEOUT' must be a whole number of seconds"
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH; install it (see docs/helm.md, 'kind')"
done
docker info >/dev/null 2>&1 || die "docker cannot reach an engine; start Docker first"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  die "a kind cluster named $CLUSTER_NAME exists already; delete it (kind delete cluster --name $CLUSTER_NAME) or set CLUSTER_NAME"
fi

k() { kubectl --context "$CONTEXT" "$@"; }

created=0
cleanup() {
  local rc=$?
  if (( rc != 0 && created )); then
    log "failed (exit $rc): diagnostics follow"
    k get pfa,daskclusters,pods,services -A -o wide || true
    k describe pfa -A || true
    k logs -n "$NAMESPACE" -l app.kubernetes.io/component=operator --tail=200 || true
    k logs -n "$NAMESPACE" -l app.kubernetes.io/component=dask-kubernetes-operator --tail=100 || true
    k get events -A --sort-by=.lastTimestamp | tail -n 40 || true
  fi
  if (( created )) && [[ "$KEEP_CLUSTER" != 1 ]]; then
    log "deleting kind cluster $CLUSTER_NAME"
    kind delete cluster --name "$CLUSTER_NAME" || true
  elif (( created )); then
    log "keeping kind cluster $CLUSTER_NAME (kubectl --context $CONTEXT ...)"
  fi
  exit "$rc"
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER_NAME"
created=1
kind create cluster --name "$CLUSTER_NAME" --wait 180s

log "building $IMAGE (BASE_IMAGE=$BASE_IMAGE)"
docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg "REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

chart_args=(
  --kube-context "$CONTEXT" --namespace "$NAMESPACE" --create-namespace
  --set "image.repository=${IMAGE%:*}" --set "image.tag=${IMAGE##*:}" --set image.pullPolicy=IfNotPresent
  --wait --timeout 5m
)
if [[ "$DASK_OPERATOR" == upstream ]]; then
  log "installing the dask-kubernetes operator from https://helm.dask.org"
  helm install dask-operator dask-kubernetes-operator --repo https://helm.dask.org \
    --kube-context "$CONTEXT" --namespace dask-operator --create-namespace --wait --timeout 5m
else
  chart_args+=(--set daskKubernetesOperator.enabled=true)
fi

log "installing the chart"
helm install "$RELEASE" "$ROOT/charts/portfolio-operator" "${chart_args[@]}"
k -n "$NAMESPACE" rollout status "deployment/$RELEASE" --timeout=180s

log "applying $SAMPLE"
resource="$(k create -f "$ROOT/$SAMPLE" -o name)"
sample_ns="$(k get -f "$ROOT/$SAMPLE" -o jsonpath='{.metadata.namespace}')"
log "created $resource in namespace $sample_ns; waiting up to ${TIMEOUT}s"

deadline=$(( SECONDS + TIMEOUT )) last=""
while :; do
  phase="$(k -n "$sample_ns" get "$resource" -o jsonpath='{.status.phase}')"
  [[ "$phase" != "$last" ]] && log "phase: ${phase:-<none yet>}" && last="$phase"
  case "$phase" in
    Succeeded) break ;;
    Failed) die "$resource failed: $(k -n "$sample_ns" get "$resource" -o jsonpath='{.status.conditions}')" ;;
  esac
  (( SECONDS < deadline )) || die "$resource still '$phase' after ${TIMEOUT}s"
  sleep 5
done
k -n "$sample_ns" wait --for=condition=Complete "$resource" --timeout=60s

log "result"
k -n "$sample_ns" get pfa -o wide
k -n "$sample_ns" get "$resource" -o jsonpath='{.status}' | python3 -m json.tool
report_cm="$(k -n "$sample_ns" get "$resource" -o jsonpath='{.status.reportConfigMap}')"
[[ -n "$report_cm" ]] || die "$resource has no status.reportConfigMap"
log "report ConfigMap $report_cm: $(k -n "$sample_ns" get configmap "$report_cm" -o jsonpath='{.data.report\.json}' | wc -c) bytes"
k -n "$sample_ns" get events --field-selector "involvedObject.name=${resource##*/}" --sort-by=.lastTimestamp
k -n "$sample_ns" get daskclusters,daskautoscalers 2>/dev/null || true
log "kind end-to-end passed"
