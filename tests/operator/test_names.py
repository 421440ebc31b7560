"""Every legal PortfolioAnalysis name gives valid, distinct names and labels for its children.

A resource name is a DNS subdomain of up to 253 characters. The children's names and the owner
label derived from it have tighter rules (a Service name is a 63-character DNS-1035 label, a
label value holds 63 characters and must end with a letter or digit); a bare cut broke them.
"""

from __future__ import annotations

import re

import pytest
from portfolio_operator import cluster as clusters
from portfolio_operator.owners import owner_label_value
from portfolio_operator.status import report_configmap_name

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

NAMES = [
    "demo",
    "1st-portfolio",
    "a.b",
    "x" * 62 + "-" + "y" * 8,  # its first 63 characters end in "-"
    "x" * 62 + "." + "y" * 8,  # ... in "."
    "a" * 63,
    "a" * 64,
    ".".join(["b" * 63] * 3) + "." + "c" * 61,  # 253 characters, the longest legal name
    ".".join(["b" * 63] * 3) + "." + "d" * 61,  # the same but for its last characters
]


@pytest.mark.parametrize("name", NAMES)
def test_derived_names_and_labels_are_valid_for_any_legal_name(name: str) -> None:
    assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), "not a legal resource name"
    label = owner_label_value(name)
    assert len(label) <= 63 and LABEL_VALUE.match(label), label
    report = report_configmap_name(name)
    assert len(report) <= 253 and DNS_SUBDOMAIN.match(report) and report.endswith("-report")
    service = clusters.cluster_name(name, "uid-1") + clusters.SCHEDULER_SUFFIX
    assert len(service) <= 63 and DNS_1035_LABEL.match(service), service


def test_derived_names_stay_distinct_and_short_ones_stay_readable() -> None:
    for derive in (owner_label_value, report_configmap_name):
        assert len({derive(name) for name in NAMES}) == len(NAMES), derive.__name__
    assert owner_label_value("demo") == "demo"
    assert report_configmap_name("demo") == "demo-report"
    assert clusters.cluster_name("demo", "u") == "demo-dask"
