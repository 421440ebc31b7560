"""Free ports and the command lines of etcd, kube-apiserver and kube-controller-manager.

The flags both control planes use live here once; what differs between the `kube` tests'
loopback control plane and the e2e cluster's node-facing one is passed in (`extra` flags, the
address, the authorization modes), each with its reason at the caller.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path

from hack.kubelocal.pki import Pki

SERVICE_CIDR = "10.0.0.0/24"
# The first address of the service range: the `kubernetes` Service's ClusterIP.
API_SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports nothing listens on right now: bound all at once (the kernel picks) so they differ.

    Another process may take one before the component binds it; callers that care retry.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def etcd_args(
    *, data_dir: Path, client_url: str, peer_url: str, name: str = "default"
) -> list[str]:
    """A single-member etcd. fsync off: the data is thrown away and fsync only slows starts."""
    return [
        f"--data-dir={data_dir}",
        f"--name={name}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={name}={peer_url}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(
    *,
    etcd_url: str,
    pki: Pki,
    address: str,
    port: int,
    cert_dir: Path,
    service_account_issuer: str,
    authorization_mode: str = "RBAC",
    extra: Sequence[str] = (),
) -> list[str]:
    """kube-apiserver serving on address:port with the PKI's certificates.

    Client certificates from the CA authenticate (CN user, O groups); service-account tokens
    are signed with `pki.service_account_key` and checked with its public half.
    """
    return [
        f"--etcd-servers={etcd_url}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={service_account_issuer}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--authorization-mode={authorization_mode}",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
        *extra,
    ]


def controller_manager_args(
    *, kubeconfig: Path, pki: Pki, port: int, cert_dir: Path, extra: Sequence[str] = ()
) -> list[str]:
    """kube-controller-manager: garbage collection, namespace deletion, token and CSR signing.

    One controller per ServiceAccount (`--use-service-account-credentials`), the CA as cluster
    signer; no leader election (one instance); health on 127.0.0.1:port.
    """
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--leader-elect=false",
        "--v=1",
        *extra,
    ]
