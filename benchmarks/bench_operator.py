"""Operator speed on the real API server, each figure against a baseline from the same run.

1. Resource applied -> DaskCluster created: the time from creating a PortfolioAnalysis until
   its DaskCluster can be read from the API server, against the floor of creating a
   DaskCluster directly and reading it back (what the operator cannot beat).
2. N analyses applied at once, until all are Succeeded, against the same N analyses run
   directly with the library (one thread and Dask client each, like the operator) on the same
   Dask cluster: the ratio is the operator's overhead.

    uv run python benchmarks/bench_operator.py [--resources 20] [--samples 10]

Needs the control-plane binaries (hack/kube-binaries.sh; KUBEBUILDER_ASSETS).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.operator.harness import (  # noqa: E402
    Kube,
    OperatorProcess,
    install,
    operator_kubeconfig,
)
from tests.support.control_plane import ControlPlane  # noqa: E402
from tests.support.dask_cluster import local_cluster  # noqa: E402
from tests.support.polling import wait_until  # noqa: E402

TICKERS = ["AAPL", "MSFT", "IBM", "GOOG"]


def timed_until(condition, timeout: float = 60.0, interval: float = 0.005) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("condition not met")
        time.sleep(interval)
    return time.perf_counter() - start


def cluster_latency(kube: Kube, samples: int) -> tuple[list[float], list[float]]:
    """(floor, operator) seconds per sample."""
    from dask_kubernetes.operator import make_cluster_spec
    from portfolio_operator.cluster import _drop_none

    # One resource first, not counted: the first reconcile pays for imports and connections.
    kube.apply_pfa("latency-warmup", {"tickers": TICKERS})
    timed_until(lambda: kube.dask("daskclusters", "latency-warmup-dask"))
    floor, operator = [], []
    for i in range(samples):
        name = f"direct-{i}"
        body = _drop_none(make_cluster_spec(name=name, image="x", n_workers=1))
        start = time.perf_counter()
        kube.custom.create_namespaced_custom_object(
            "kubernetes.dask.org", "v1", kube.namespace, "daskclusters", body
        )
        timed_until(lambda n=name: kube.dask("daskclusters", n))
        floor.append(time.perf_counter() - start)

        start = time.perf_counter()
        kube.apply_pfa(f"latency-{i}", {"tickers": TICKERS})
        timed_until(lambda i=i: kube.dask("daskclusters", f"latency-{i}-dask"))
        operator.append(time.perf_counter() - start)
    return floor, operator


def concurrent_direct(address: str, count: int) -> float:
    """The same analyses straight through the library, one thread and client each."""
    from portfolio_analysis.pipeline import run_combined_analysis
    from portfolio_operator.spec import parse_spec

    kwargs = parse_spec({"tickers": TICKERS[:2]}).run_kwargs()
    run_combined_analysis(dask_scheduler=address, **kwargs)  # warm the workers up, not counted
    start = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        results = list(
            pool.map(lambda _: run_combined_analysis(dask_scheduler=address, **kwargs),
                     range(count))
        )  # fmt: skip
    assert all(r["report"]["securities_analyzed"] == 2 for r in results)
    return time.perf_counter() - start


def concurrent_operator(kube: Kube, address: str, count: int, log) -> float:
    names = [f"batch-{i:02d}" for i in range(count)]
    start = time.perf_counter()
    for name in names:
        kube.apply_pfa(name, {"tickers": TICKERS[:2], "cluster": {"schedulerAddress": address}})
    wait_until(
        lambda: all(kube.status(n).get("phase") in ("Succeeded", "Failed") for n in names),
        600, f"all {count} analyses end", log,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    phases = [kube.status(n)["phase"] for n in names]
    assert phases.count("Succeeded") == count, phases
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    with ControlPlane() as plane:
        install(plane)
        kubeconfig = operator_kubeconfig(plane, work)
        plane.kubectl("create", "namespace", "bench")
        kube = Kube(plane, "bench")
        with local_cluster(2) as cluster:
            # Production progress interval (the tests poll faster to finish sooner).
            operator = OperatorProcess(
                kubeconfig, ["bench"], work / "operator.log",
                extra_env={"PORTFOLIO_OPERATOR_PROGRESS_SECONDS": "5"},
            )  # fmt: skip
            try:
                operator.wait_ready()
                floor, latency = cluster_latency(kube, args.samples)
                direct = concurrent_direct(cluster.scheduler_address, args.resources)
                via_operator = concurrent_operator(
                    kube, cluster.scheduler_address, args.resources, operator.log
                )
            finally:
                operator.stop()
    f_med, o_med = statistics.median(floor), statistics.median(latency)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"applied -> DaskCluster created, {args.samples} samples (median / max):")
    print(f"  floor (create + read a DaskCluster directly) {f_med * 1000:7.1f} ms / "
          f"{max(floor) * 1000:7.1f} ms")  # fmt: skip
    print(f"  operator (PortfolioAnalysis -> DaskCluster)  {o_med * 1000:7.1f} ms / "
          f"{max(latency) * 1000:7.1f} ms   ratio {o_med / f_med:5.1f}x")  # fmt: skip
    print(f"{args.resources} analyses of {TICKERS[:2]} at once, on one 2-worker LocalCluster:")
    print(f"  library directly ({args.resources} threads) {direct:7.2f} s")
    print(f"  operator (apply -> all Succeeded)   {via_operator:7.2f} s   "
          f"ratio {via_operator / direct:5.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
