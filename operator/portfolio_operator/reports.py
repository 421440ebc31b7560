"""Each analysis's HTML report, for the operator's HTTP server (`/reports/<namespace>/<name>`).

The page is the analysis library's own HTML report (``portfolio_analysis.report.render_html``),
rendered from the report document stored gzipped in the analysis's report ConfigMap
(binaryData ``report.json.gz``: what the CLI writes as report.json, daily series included), so a
cluster user sees the same page, charts included, as a laptop user of the CLI. A ConfigMap
without that key (written by an earlier operator, or a document too large to keep) is drawn
from its readable ``report.json`` key. Only report ConfigMaps this operator wrote are read:
the ConfigMap must carry the operator's managed-by label and a controller ownerReference to the
PortfolioAnalysis of that name (its uid), else the answer is 404, exactly as for a name that
does not exist, so the server never shows another object's data.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from portfolio_operator.constants import COMPONENT, MANAGED_BY_LABEL
from portfolio_operator.kube import KubeApi, KubeError
from portfolio_operator.owners import controlled_by
from portfolio_operator.status import DOCUMENT_KEY, REPORT_KEY, report_configmap_name

# Namespaces are DNS labels, PortfolioAnalysis names DNS subdomains.
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Rendered pages kept, by ConfigMap uid and resourceVersion (a new report is a new version).
CACHED_PAGES = 16
# The page is self-contained (inline scripts, styles and data, data: images): the browser may
# load nothing else, and send nothing anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
)


class ReportUnavailable(Exception):
    """The report exists but cannot be shown now (API server unreachable, unreadable JSON)."""


def is_own_report(configmap: Mapping[str, Any] | None, owner_uid: str) -> bool:
    """Whether `configmap` is a report this operator wrote for the analysis `owner_uid`."""
    if configmap is None:
        return False
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == COMPONENT and controlled_by(configmap, owner_uid)


class ReportPages:
    """Finds an analysis's own report ConfigMap and renders its HTML page."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._pages: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def html(self, namespace: str, name: str) -> str | None:
        """The page, or None (404) when there is no such analysis or no report of its own."""
        if not _NAMESPACE_RE.match(namespace) or not _NAME_RE.match(name):
            return None
        try:
            analysis = await self.api.get_analysis(namespace, name)
            if analysis is None:
                return None
            uid = analysis["metadata"]["uid"]
            configmap = await self.api.get_configmap(namespace, report_configmap_name(name))
        except KubeError as exc:
            if exc.status in (403, 404):  # a namespace it may not read is no report either
                return None
            raise ReportUnavailable(str(exc)) from exc
        if not is_own_report(configmap, uid):
            return None
        assert configmap is not None
        packed = (configmap.get("binaryData") or {}).get(DOCUMENT_KEY)
        text = (configmap.get("data") or {}).get(REPORT_KEY)
        if not packed and not text:
            return None
        meta = configmap["metadata"]
        key = (str(meta.get("uid")), str(meta.get("resourceVersion")))
        if key in self._pages:
            self._pages.move_to_end(key)
            return self._pages[key]
        # Unpacking, parsing and rendering a large report takes a moment: in a thread, so the
        # event loop (health, metrics, other pages) never waits. render_html only builds
        # strings from the document, so concurrent renders are safe and need no lock.
        page = await asyncio.to_thread(_render, packed, text)
        self._pages[key] = page
        while len(self._pages) > CACHED_PAGES:
            self._pages.popitem(last=False)
        return page


def stored_document(packed: str | None, text: str | None) -> Any:
    """The stored report: the gzipped document (binaryData, base64) when there is one, else
    the readable JSON. ReportUnavailable when it cannot be read."""
    try:
        if packed:
            return json.loads(gzip.decompress(base64.b64decode(packed, validate=True)))
        return json.loads(text or "")
    except (ValueError, OSError, EOFError) as exc:  # binascii.Error and gzip's are among them
        raise ReportUnavailable(f"the stored report cannot be read: {exc}") from exc


def _render(packed: str | None, text: str | None) -> str:
    """The analysis library's HTML report of a stored report."""
    from portfolio_analysis.report import render_html

    return render_html(stored_document(packed, text))
