"""Kubernetes-free portfolio analysis: prices, indicators, sentiment, portfolio figures."""
