"""Local Kubernetes from host processes: what the `kube` tests and the e2e cluster share.

Two callers start a real control plane from the pinned binaries of hack/kube-binaries.sh:
the pytest fixture `tests/support/control_plane.py` (etcd, kube-apiserver and
kube-controller-manager on loopback ports, for the `kube` tests) and the script
`hack/local-cluster/cluster.py` (the same three plus containerd, kubelet, kube-proxy and CoreDNS,
for the `e2e` tests). This package holds what they have in common, so the two cannot drift:

- `binaries`: the pins of hack/kube-versions.env, the folder hack/kube-binaries.sh builds into,
  and the one lookup of a binary (TEST_ASSET_*, KUBEBUILDER_ASSETS, that folder; never PATH);
- `pki`: a throw-away CA and the certificates and kubeconfigs the components need (openssl);
- `components`: free ports and the command lines of etcd, kube-apiserver and
  kube-controller-manager.

Each caller keeps its own process lifecycle. Standard library only: cluster.py and
hack/images/images.py run before the project's virtualenv exists (as root, with the system
python3). Scripts import it as `hack.kubelocal` after putting the repository root on sys.path;
pytest has the root on sys.path already (`pythonpath = ["."]`).
"""
