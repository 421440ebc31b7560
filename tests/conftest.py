"""Shared pytest configuration. Fixture plugins live in tests/support/."""
