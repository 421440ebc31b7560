"""Waiting for something a test cannot be told about (an API object, a pod, a phase)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    detail: Callable[[], str] | None = None,
    *,
    interval: float = 0.1,
) -> T:
    """Poll ``condition()`` every ``interval`` s until it is truthy and return its value.

    On timeout fail naming ``what`` was awaited, followed by ``detail()`` (an operator log,
    a ``kubectl describe``) when given, so the failure says where to look.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f"\n--- details ---\n{detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}{more}")
        time.sleep(interval)
