"""Schedulers that go wrong, for the library, CLI and operator tests of issue 13.

* peers on 127.0.0.1 that are no Dask scheduler: one that accepts and never says a word, one
  that answers ``HTTP/1.1 400 Bad Request`` like a web server (a dashboard port);
* a real ``dask scheduler`` process a test can SIGTERM mid-run;
* a LocalCluster whose worker reports another version of this package.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.polling import wait_until

HTTP_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nBad Request"
)
DASK = Path(sys.executable).with_name("dask")


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def peer(answer: bytes | None) -> Iterator[str]:
    """A TCP server that is no Dask scheduler; yields its ``tcp://`` address.

    It answers ``answer`` to the first bytes a client sends, or (None) accepts and stays
    silent until the client goes away.
    """

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            received = self.request.recv(65536)
            if answer is not None and received:
                self.request.sendall(answer)
                return
            while self.request.recv(65536):
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bad-peer", daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def scheduler_process() -> Iterator[tuple[subprocess.Popen, str]]:
    """A ``dask scheduler`` in a process of its own, without workers (a run there waits,
    so it is mid-run for as long as the test likes); yields the process and its address."""
    address = f"tcp://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
         "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _accepts(address), 60, f"a scheduler listens at {address}")
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _accepts(address: str) -> bool:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
        return True
    return False


def wait_for_tasks(address: str, timeout: float = 60) -> int:
    """Wait until the scheduler at ``address`` holds tasks (a run has submitted its work)."""
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:

        def count() -> int:
            # A lambda travels by value: the scheduler process cannot import this module.
            return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

        return wait_until(count, timeout, f"a run submits tasks to {address}", interval=0.2)


@contextlib.contextmanager
def cluster_with_other_version(version: str = "0.0.1") -> Iterator[str]:
    """A LocalCluster (in-process worker, tcp://) whose worker reports ``portfolio-operator``
    at ``version``, as a worker built from another image would; yields its address."""
    from distributed import LocalCluster
    from portfolio_analysis.pipeline import OWN_DISTRIBUTION

    with LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, host="127.0.0.1",
        protocol="tcp://", scheduler_port=0, dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:  # fmt: skip
        for worker in cluster.workers.values():
            reported = worker.handlers["versions"]

            def other(packages: Any = None, _reported: Any = reported) -> dict:
                versions = _reported(packages=packages)
                versions["packages"][OWN_DISTRIBUTION] = version
                return versions

            worker.handlers["versions"] = other
        wait_until(lambda: cluster.scheduler.workers, 30, "the worker registers")
        yield cluster.scheduler_address
