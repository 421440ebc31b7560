"""The operator's Kubernetes vocabulary, each name spelled once.

API group and resource names, the labels and annotations it writes, the phases and condition
types of its status. The schema (schema.py), the manifests it builds (cluster.py, status.py)
and the controller read them here; the analysis vocabulary (tickers, sources, analyses) is the
library's, in ``portfolio_analysis.vocabulary``.
"""

from __future__ import annotations

# The PortfolioAnalysis resource.
GROUP = "analysis.portfolio-operator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PortfolioAnalysis"
PLURAL = "portfolioanalyses"
SINGULAR = "portfolioanalysis"
SHORT_NAMES = ("pfa",)
CRD_NAME = f"{PLURAL}.{GROUP}"

# The dask-kubernetes operator's resources that an analysis creates.
DASK_GROUP = "kubernetes.dask.org"
DASK_VERSION = "v1"
DASK_API_VERSION = f"{DASK_GROUP}/{DASK_VERSION}"
DASKCLUSTERS = "daskclusters"
DASKAUTOSCALERS = "daskautoscalers"

# Who writes: the Events' reporting component and the managed-by label of every child.
COMPONENT = "portfolio-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
APP_NAME_LABEL = "app.kubernetes.io/name"
# The owning PortfolioAnalysis' name on its children (a label value: at most 63 characters).
OWNER_LABEL = f"{GROUP}/name"
# Annotations: the generation a report belongs to, whether it was cut to fit, and the hash of
# the cluster spec a DaskCluster was made from (a change means a new cluster).
GENERATION_ANNOTATION = f"{GROUP}/generation"
TRUNCATED_ANNOTATION = f"{GROUP}/report-truncated"
SPEC_HASH_ANNOTATION = f"{GROUP}/cluster-spec-hash"
# kopf's finalizer and its progress/diff-base annotations.
FINALIZER = f"{GROUP}/finalizer"
KOPF_ANNOTATIONS_PREFIX = GROUP

# status.phase, in the order a run goes through them.
PENDING, PROVISIONING, RUNNING, SUCCEEDED, FAILED = (
    "Pending",
    "Provisioning",
    "Running",
    "Succeeded",
    "Failed",
)
PHASES = (PENDING, PROVISIONING, RUNNING, SUCCEEDED, FAILED)
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})
# status.conditions types (Kubernetes API conventions: one condition per aspect).
CONDITION_TYPES = ("ClusterReady", "Running", "Complete", "Failed")

# The operator's HTTP server serves each analysis's HTML report at REPORTS_PATH/<namespace>/<name>
# (status.reportURL, relative to the operator's Service).
REPORTS_PATH = "/reports"
