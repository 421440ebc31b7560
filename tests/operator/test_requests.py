"""Naming the securities (universe, ConfigMaps) and reading the report, on the real API server.

The operator runs as ``python -m portfolio_operator`` with the ServiceAccount of
manifests/rbac.yaml; analyses run on a Dask LocalCluster of this test (an external scheduler).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from portfolio_operator.constants import TRUNCATED_ANNOTATION
from portfolio_operator.status import DOCUMENT_KEY, REPORT_CONFIGMAP_MAX_BYTES, REPORT_KEY

from tests.operator.harness import MANIFESTS, Kube, phase_is
from tests.support.control_plane import ControlPlane
from tests.support.polling import wait_until

pytestmark = [pytest.mark.kube, pytest.mark.dask]

FIGURES = {  # status.portfolio field -> the report's key
    "sharpeRatio": "sharpe_ratio",
    "totalReturn": "total_return",
    "annualizedVolatility": "annualized_volatility",
}


# The API server's limit on a ConfigMap's data and binaryData values together.
CONFIGMAP_LIMIT = 1024 * 1024
_CHART = re.compile(r"data-chart='([^']*)'")


def charts(page: str) -> list[str]:
    """The page's chart containers, in order (each drawn in the browser from the document)."""
    return _CHART.findall(page)


def cli_page(args: list[str], scheduler: str, output: Path) -> str:
    """The CLI's report.html for the same request on the same scheduler."""
    from portfolio_analysis import cli

    cli.main(["run", *args, "--scheduler", scheduler, "--output", str(output), "--no-progress"])
    return (output / "report.html").read_text()


def stored_size(cm: Any) -> int:
    """What the API server counts against its limit: data and binaryData values (decoded)."""
    data = sum(len(v.encode()) for v in (cm.data or {}).values())
    return data + sum(len(base64.b64decode(v)) for v in (cm.binary_data or {}).values())


def _configmap(kube: Kube, name: str, data: dict[str, str], **meta: Any) -> None:
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, **meta), data=data)
    kube.core.create_namespaced_config_map(kube.namespace, body)


def test_universe_sp500_and_the_sp500_ticker_list_give_the_clis_figures(
    kube: Kube, dask_cluster, start_operator, tmp_path
) -> None:
    from portfolio_analysis import embedded

    operator = start_operator()
    scheduler = {"schedulerAddress": dask_cluster.scheduler_address}
    kube.apply_pfa("universe", {"universe": "sp500", "cluster": scheduler})
    # The issue's request: the S&P tickers as a list, with the S&P data set chosen first.
    tickers = embedded.universe_tickers("sp500")
    listed = {"tickers": tickers, "embeddedDatasets": ["sp500", "sample"],
              "analyses": ["pricing", "portfolio"], "cluster": scheduler}  # fmt: skip
    kube.apply_pfa("listed", listed)

    # The CLI itself: `portfolio-analysis run --universe sp500 --scheduler ... --output DIR`
    # (its exit code may say "partial": some S&P tickers have too little data).
    output = tmp_path / "cli"
    cli_html = cli_page(["--universe", "sp500"], dask_cluster.scheduler_address, output)
    written = json.loads((output / "report.json").read_text())
    expected = written["report"]["portfolio"]

    for name in ("universe", "listed"):
        wait_until(phase_is(kube, name, "Succeeded", "Failed"), 300, f"{name} ends", operator.log)
        status = kube.status(name)
        assert status["phase"] == "Succeeded", status
        assert status["tickerCount"] == len(tickers)
        for field, key in FIGURES.items():
            assert status["portfolio"][field] == pytest.approx(expected[key], abs=1e-9), field
        coverage = expected.get("coverage")  # the library's, once it reports coverage
        if coverage is None:
            assert status["portfolio"].get("coverage") is None
        else:
            shown = status["portfolio"]["coverage"]
            assert shown["tickersUsed"] == coverage["tickers_used"]
            assert shown["tickersAsked"] == coverage["tickers_asked"]
            assert (shown["start"], shown["end"]) == (coverage["start"], coverage["end"])
            assert shown["excluded"] == len(coverage.get("excluded") or {})

    # The report ConfigMap: under the API server's limit (it was accepted), the readable
    # result under its key, the document (1.4 MB as the CLI writes it) gzipped beside it,
    # and the served page has every chart of the CLI's page.
    stored = kube.configmap("universe-report")
    size = stored_size(stored)
    assert size <= REPORT_CONFIGMAP_MAX_BYTES < CONFIGMAP_LIMIT
    assert json.loads(stored.data[REPORT_KEY])["combined_analysis"]
    document = json.loads(gzip.decompress(base64.b64decode(stored.binary_data[DOCUMENT_KEY])))
    assert document["report"]["series"]["tickers"]
    code, page = operator.get(kube.status("universe")["reportURL"])
    assert code == 200, page
    assert charts(page) == charts(cli_html) and len(charts(cli_html)) > 4
    trimmed = stored.metadata.annotations[TRUNCATED_ANNOTATION] == "true"
    assert trimmed == ("trimmed to fit the Kubernetes ConfigMap size limit" in page)
    print(
        f"sp500 report ConfigMap: report.json {len(stored.data[REPORT_KEY].encode())} B, "
        f"{DOCUMENT_KEY} {size - len(stored.data[REPORT_KEY].encode())} B, total {size} B, "
        f"trimmed: {trimmed}; CLI report.json {(output / 'report.json').stat().st_size} B"
    )
    print(
        "CLI --universe sp500:",
        {k: round(expected[k], 4) for k in FIGURES.values()},
        "operator:",
        {f: round(kube.status("universe")["portfolio"][f], 4) for f in FIGURES},
        "coverage:",
        (kube.status("universe")["portfolio"].get("coverage") or {}).get("tickers"),
    )


def test_the_api_server_refuses_two_ways_of_naming_the_securities(
    control_plane: ControlPlane, kube: Kube, operator_config
) -> None:
    with pytest.raises(k8s.ApiException) as refused:
        kube.apply_pfa("both", {"tickers": ["AAPL"], "universe": "sp500"})
    assert "give exactly one of spec.tickers, spec.holdings, spec.universe" in refused.value.body
    with pytest.raises(k8s.ApiException) as unknown:
        kube.apply_pfa("nasdaq", {"universe": "nasdaq"})
    assert "supported values" in unknown.value.body and "sp500" in unknown.value.body


def test_the_universe_and_configmap_samples_are_valid(
    control_plane: ControlPlane, kube: Kube, operator_config
) -> None:
    for sample in ("sp500-universe.yaml", "holdings-from-configmap.yaml"):
        control_plane.kubectl("apply", "--dry-run=server", "-n", kube.namespace,
                              "-f", str(MANIFESTS / "samples" / sample))  # fmt: skip


def test_tickers_and_holdings_from_configmaps_including_one_created_after_the_analysis(
    kube: Kube, dask_cluster, start_operator
) -> None:
    operator = start_operator()
    scheduler = {"schedulerAddress": dask_cluster.scheduler_address}
    _configmap(kube, "desk-tickers", {"tickers.txt": "# the desk's list\naapl\nMSFT, IBM\n"})
    listed = {"configMapKeyRef": {"name": "desk-tickers", "key": "tickers.txt"}}
    kube.apply_pfa("from-list", {"cluster": scheduler, "tickersFrom": listed})
    # Applied before its ConfigMap (as `kubectl apply -f dir/` may): it waits, saying for what.
    ref = {"configMapKeyRef": {"name": "desk-book", "key": "holdings.yaml"}}
    kube.apply_pfa("from-book", {"cluster": scheduler, "holdingsFrom": ref})

    def waits() -> bool:
        running = kube.condition("from-book", "Running")
        return running.get("reason") == "WaitingForConfigMap"

    wait_until(waits, 30, "from-book waits for its ConfigMap", operator.log)
    assert (
        "ConfigMap desk-book (key holdings.yaml)"
        in kube.condition("from-book", "Running")["message"]
    )
    assert kube.status("from-book")["phase"] == "Pending"
    _configmap(kube, "desk-book", {"holdings.yaml": "AAPL: 10\nIBM: 5\n"})

    for name, tickers in (("from-list", ["AAPL", "IBM", "MSFT"]), ("from-book", ["AAPL", "IBM"])):
        wait_until(phase_is(kube, name, "Succeeded", "Failed"), 120, f"{name} ends", operator.log)
        status = kube.status(name)
        assert status["phase"] == "Succeeded", status
        assert status["tickerCount"] == len(tickers)
        assert sorted(r["ticker"] for r in status["results"]) == tickers
    # Holdings: the portfolio is weighted by the shares (a market value exists).
    assert kube.status("from-book")["portfolio"]["marketValue"] > 0


def test_the_report_is_served_as_html_only_from_the_operators_own_configmap(
    control_plane: ControlPlane, kube: Kube, dask_cluster, start_operator, tmp_path
) -> None:
    operator = start_operator()
    scheduler = {"schedulerAddress": dask_cluster.scheduler_address}
    kube.apply_pfa("served", {"tickers": ["AAPL", "IBM"], "cluster": scheduler})
    wait_until(phase_is(kube, "served", "Succeeded", "Failed"), 120, "it ends", operator.log)
    status = kube.status("served")
    assert status["reportURL"] == f"/reports/{kube.namespace}/served"
    code, page = operator.get(status["reportURL"])
    assert code == 200, page
    assert page.startswith("<!DOCTYPE html>") and "Portfolio analysis" in page
    stored = json.loads(kube.configmap("served-report").data["report.json"])
    assert all(row["ticker"] in page for row in stored["combined_analysis"])
    # The CLI's page for the same request has the same charts: equity, drawdown, rolling
    # figures, and each ticker's price, RSI and MACD (drawn from the document's daily series).
    expected = charts(cli_page(["--tickers", "AAPL,IBM"], dask_cluster.scheduler_address,
                               tmp_path / "cli"))  # fmt: skip
    assert "equity" in expected and "price:AAPL" in expected
    assert charts(page) == expected

    # docs/operator.md's kubectl lines read both keys: the readable result and the document.
    def jsonpath(path: str) -> str:
        get = ("get", "cm", "served-report", "-n", kube.namespace, "-o", f"jsonpath={path}")
        return control_plane.kubectl(*get).stdout

    assert json.loads(jsonpath(r"{.data.report\.json}")) == stored
    document = json.loads(
        gzip.decompress(base64.b64decode(jsonpath(r"{.binaryData.report\.json\.gz}")))
    )
    assert document["report"]["series"]["tickers"].keys() == {"AAPL", "IBM"}
    assert (
        jsonpath(r"{.metadata.annotations.analysis\.portfolio-operator\.io/report-truncated}")
        == "false"
    )

    # A ConfigMap of the report's name that the operator did not write is never shown: here the
    # PortfolioAnalysis exists (it waits for a ConfigMap) and even claims the managed-by label.
    secret = "do-not-show-this"
    _configmap(kube, "impostor-report", {"report.json": json.dumps({"status": secret})},
               labels={"app.kubernetes.io/managed-by": "portfolio-operator"})  # fmt: skip
    kube.apply_pfa("impostor", {"cluster": scheduler, "tickersFrom": {
        "configMapKeyRef": {"name": "never-created", "key": "t"}}})  # fmt: skip
    wait_until(lambda: kube.status("impostor").get("phase"), 30, "impostor accepted", operator.log)
    code, body = operator.get(f"/reports/{kube.namespace}/impostor")
    assert code == 404 and secret not in body
    # A report ConfigMap left without its PortfolioAnalysis, and names that do not exist.
    _configmap(kube, "ghost-report", {"report.json": json.dumps({"status": secret})})
    for path in (f"/reports/{kube.namespace}/ghost", f"/reports/{kube.namespace}/nothing",
                 "/reports/no-such-namespace/served", "/reports/Bad_NS/served"):  # fmt: skip
        code, body = operator.get(path)
        assert code == 404 and secret not in body, (path, code, body)
