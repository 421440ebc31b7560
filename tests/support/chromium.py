"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

Used by the report tests: open a page, collect console errors, uncaught exceptions and every
network request, read values from the page, and save a full-page screenshot. Chromium is
installed with apt-get when missing, the way hack/local-cluster/cluster.py installs Debian
packages (non-interactive, no recommended packages).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
DEBIAN_PACKAGE = "chromium"
# A quiet, isolated browser: no sandbox (root in a container), no GPU, nothing fetched on its
# own behalf (component updates, sync, QUIC probes, first-run pages).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
START_TIMEOUT = 30.0


def ensure_chromium() -> str:
    """The Chromium executable, apt-get installing Debian's package when it is missing."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if not shutil.which("apt-get"):
        raise RuntimeError(f"{CHROMIUM} is missing and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", DEBIAN_PACKAGE],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return CHROMIUM


@dataclass
class PageVisit:
    """What happened while a page loaded."""

    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.exceptions + self.log_errors


class Browser:
    """One Chromium process and one page (tab) in it, over a DevTools WebSocket."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._events: list[dict] = []
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, *, timeout: float = 30.0) -> dict:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        self._socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._socket.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for index, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(index)
        while True:
            event = json.loads(self._socket.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if event.get("method") == method:
                return event
            self._events.append(event)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def visit(self, url: str, *, width: int = 1200, settle: float = 0.5) -> PageVisit:
        """Load ``url`` and record its console errors, exceptions and requests."""
        self._events.clear()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        time.sleep(settle)  # late console messages
        self.evaluate("1")  # drains the events that arrived meanwhile
        visit = PageVisit()
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                visit.console_errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                visit.exceptions.append(
                    str(details.get("exception", {}).get("description") or details.get("text"))
                )
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                visit.log_errors.append(str(params["entry"].get("text")))
            elif method == "Network.requestWillBeSent":
                visit.requests.append(params.get("request", {}).get("url", ""))
        return visit

    def screenshot(self, path: Path, width: int = 1200) -> Path:
        """A PNG of the whole page (not only the viewport) at ``path``."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        height = min(int(size["height"]) + 1, 16000)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        time.sleep(0.3)  # the page's resize handler redraws the charts at the new size
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    """A fresh headless Chromium with its own profile folder, and a page in it."""
    from websockets.sync.client import connect

    executable = ensure_chromium()
    profile.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            executable,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {process.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as socket:
            browser = Browser(socket)
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            browser.session = browser.send(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
            yield browser
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
