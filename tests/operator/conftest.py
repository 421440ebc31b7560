"""Builders for PortfolioAnalysis objects as the API server returns them."""

from __future__ import annotations

import copy
from typing import Any

from portfolio_operator.constants import API_VERSION, KIND


def make_pfa(
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    *,
    name: str = "demo",
    namespace: str = "team-a",
    uid: str = "1234-abcd",
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": generation,
        },
        "spec": copy.deepcopy(spec if spec is not None else {"tickers": ["AAPL", "MSFT"]}),
        "status": copy.deepcopy(status or {}),
    }
