"""Shared pytest configuration. Fixture plugins live in tests/support/."""

pytest_plugins = ["tests.support.kube_fixtures"]
