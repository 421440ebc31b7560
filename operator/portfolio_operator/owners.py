"""Ownership of the objects an analysis creates: how they are adopted, how they are recognised.

Every child (DaskCluster, DaskAutoscaler, report ConfigMap) carries the same labels and a
controller ownerReference to its PortfolioAnalysis, so Kubernetes' garbage collector deletes it
with the analysis. The same reference is how the operator tells its own objects from a user's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import kopf

from portfolio_operator.constants import COMPONENT, MANAGED_BY_LABEL, OWNER_LABEL

# Kubernetes' limits: label values and DNS labels hold 63 characters, object names 253.
MAX_LABEL_VALUE = 63
MAX_OBJECT_NAME = 253


def fitted_name(name: str, limit: int, suffix: str = "") -> str:
    """``name + suffix`` when it fits in ``limit`` characters, else a cut of ``name`` and a
    short hash of all of it: distinct names stay distinct, and the result still starts and ends
    with a letter or digit as names and label values must (a bare cut may end in - or .)."""
    if len(name) + len(suffix) <= limit:
        return name + suffix
    tag = hashlib.sha256(name.encode()).hexdigest()[:8]
    head = name[: limit - len(suffix) - len(tag) - 1].rstrip("-.")
    return f"{head}-{tag}{suffix}"


def owner_label_value(resource_name: str) -> str:
    """The OWNER_LABEL value naming a PortfolioAnalysis (any legal name, up to 253 characters)."""
    return fitted_name(resource_name, MAX_LABEL_VALUE)


def child_metadata(owner: Mapping[str, Any], name: str) -> dict[str, Any]:
    """metadata of a child named `name`: owner's namespace, our labels, owned by `owner`."""
    meta = owner["metadata"]
    child = {
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                MANAGED_BY_LABEL: COMPONENT,
                OWNER_LABEL: owner_label_value(meta["name"]),
            },
        }
    }
    kopf.append_owner_reference(child, owner=kopf.Body(dict(owner)))
    return child["metadata"]


def controlled_by(obj: Mapping[str, Any] | None, owner_uid: str) -> bool:
    """Whether `obj` names the object with `owner_uid` as its controller (so it is ours)."""
    references = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") and ref.get("uid") == owner_uid for ref in references)
