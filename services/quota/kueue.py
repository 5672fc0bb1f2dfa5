"""Kueue objects rendered from the quotas (pure: no Kubernetes API here).

With ``spawner.runtime: kubernetes`` and ``kueue.enabled`` the ledger's quotas are mirrored
into Kueue (kueue.x-k8s.io/v1beta1) so the cluster's scheduler enforces them too:

- a ``ResourceFlavor`` per device model with a quota (its nodes found by the vendor's
  product label), plus ``gemhub-default`` for CPU and memory;
- a ``ClusterQueue`` per workspace, in the workspace's cohort (``gemhub-<cohort>``), with
  the nominal quota and borrowing limit of each resource; resources without a limit get
  a quota far above any cluster (Kueue admits nothing a queue does not cover);
- a ``LocalQueue`` per workspace in the namespace its pods run in;
- a ``WorkloadPriorityClass`` per priority level.

Pods carry ``kueue.x-k8s.io/queue-name`` and ``kueue.x-k8s.io/priority-class``
(:func:`pod_labels`). Counters (environments, jobs, inference) and fractions of a device
stay the ledger's to enforce: Kueue counts whole extended resources.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Any, Iterable, Mapping

from gemhub.spawner.accelerators import VendorRegistry

from . import quotas

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
QUEUE_LABEL = f"{GROUP}/queue-name"
PRIORITY_LABEL = f"{GROUP}/priority-class"
MANAGED = {"app.kubernetes.io/managed-by": "gemhub"}
DEFAULT_FLAVOR = "gemhub-default"
# "no limit": more than any cluster has (Kueue needs a quota for every covered resource)
UNLIMITED = {"cpu": "100000", "memory": "1Pi", "device": "100000"}
KINDS = {"ResourceFlavor": "resourceflavors", "ClusterQueue": "clusterqueues",
         "LocalQueue": "localqueues", "WorkloadPriorityClass": "workloadpriorityclasses"}


def slug(text: str, limit: int = 50) -> str:
    """A DNS-1123 label part for ``text``: safe characters, plus a hash of the exact text
    whenever anything had to change, so two names never meet."""
    clean = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-") or "x"
    if clean != text:
        clean = f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return clean


def queue_name(ws_id: int) -> str:
    return f"gemhub-ws-{int(ws_id)}"


def flavor_name(model: str) -> str:
    return f"gemhub-{slug(model)}"


def cohort_name(cohort: str) -> str:
    return f"gemhub-{slug(cohort)}"


def priority_class(level: str) -> str:
    return f"gemhub-{slug(level)}"


def level_of(priority: int, levels: Mapping[str, int]) -> str:
    """The highest level at or below ``priority`` (the lowest level when none is)."""
    ordered = sorted(levels.items(), key=lambda kv: kv[1])
    chosen = ordered[0][0]
    for name, value in ordered:
        if value <= priority:
            chosen = name
    return chosen


def pod_labels(ws_id: int, priority: int, levels: Mapping[str, int]) -> dict[str, str]:
    return {QUEUE_LABEL: queue_name(ws_id), PRIORITY_LABEL: priority_class(level_of(priority, levels))}


def _meta(name: str, namespace: str | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "labels": dict(MANAGED)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _quantity(value: Decimal, key: str) -> str | int:
    if key == quotas.MEMORY:
        return f"{int(value)}Mi"
    if key == quotas.CPU:
        return f"{value.normalize():f}"
    return int(value)  # whole devices: a fraction of a quota stays the ledger's


def _model_resource(registry: VendorRegistry, model: str) -> tuple[str, dict[str, str]] | None:
    """(extended resource, node labels) of a concrete device model."""
    found = registry.find_model(model)
    if found is None or found[1].is_family:
        return None
    vendor, info = found
    labels = {}
    product_label = vendor.node_labels.get("product")
    if product_label and info.product_names:
        labels[product_label] = re.sub(r"[^A-Za-z0-9_.-]+", "-", info.product_names[0]).strip("-")[:63]
    return vendor.whole_resource_for(info.name), labels


def render(workspaces: Iterable[Mapping[str, Any]], levels: Mapping[str, int], registry: VendorRegistry,
           namespace: str) -> list[dict]:
    """Every Kueue object of the platform. ``workspaces``: {id, name, cohort, limits,
    borrowing} with flat limits (:mod:`.quotas`)."""
    workspaces = list(workspaces)
    models: dict[str, tuple[str, dict[str, str]]] = {}
    for ws in workspaces:
        for key in ws["limits"]:
            if key.startswith(quotas.ACCEL):
                found = _model_resource(registry, key[len(quotas.ACCEL):])
                if found is not None:
                    models[key[len(quotas.ACCEL):]] = found
    objects: list[dict] = [{"apiVersion": API_VERSION, "kind": "ResourceFlavor",
                            "metadata": _meta(DEFAULT_FLAVOR), "spec": {}}]
    for model, (_, labels) in sorted(models.items()):
        spec = {"nodeLabels": labels} if labels else {}
        objects.append({"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": _meta(flavor_name(model)),
                        "spec": spec})
    for name, value in sorted(levels.items(), key=lambda kv: kv[1]):
        objects.append({"apiVersion": API_VERSION, "kind": "WorkloadPriorityClass",
                        "metadata": _meta(priority_class(name)), "value": int(value),
                        "description": f"GemHub priority level {name!r}"})
    for ws in sorted(workspaces, key=lambda w: w["id"]):
        objects.append(cluster_queue(ws, models))
        objects.append({"apiVersion": API_VERSION, "kind": "LocalQueue",
                        "metadata": _meta(queue_name(ws["id"]), namespace),
                        "spec": {"clusterQueue": queue_name(ws["id"])}})
    return objects


def cluster_queue(ws: Mapping[str, Any], models: Mapping[str, tuple[str, dict]]) -> dict:
    limits, borrowing, cohort = ws["limits"], ws.get("borrowing") or {}, ws.get("cohort")

    def resource(name: str, key: str, unlimited: str) -> dict:
        out: dict[str, Any] = {"name": name,
                               "nominalQuota": _quantity(limits[key], key) if key in limits else unlimited}
        if cohort and key in borrowing:
            out["borrowingLimit"] = _quantity(borrowing[key], key)
        return out

    groups = [{"coveredResources": ["cpu", "memory"],
               "flavors": [{"name": DEFAULT_FLAVOR,
                            "resources": [resource("cpu", quotas.CPU, UNLIMITED["cpu"]),
                                          resource("memory", quotas.MEMORY, UNLIMITED["memory"])]}]}]
    by_resource: dict[str, list[dict]] = {}
    for model, (ext, _) in sorted(models.items()):
        key = quotas.ACCEL + model
        by_resource.setdefault(ext, []).append(
            {"name": flavor_name(model), "resources": [resource(ext, key, UNLIMITED["device"])]})
    for ext, flavors in sorted(by_resource.items()):
        groups.append({"coveredResources": [ext], "flavors": flavors})
    spec: dict[str, Any] = {
        "namespaceSelector": {},
        "queueingStrategy": "StrictFIFO",  # priority, then arrival: the ledger's order
        "resourceGroups": groups,
        "preemption": {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any",
                       "borrowWithinCohort": {"policy": "Never"}},
    }
    if cohort:
        spec["cohort"] = cohort_name(cohort)
    meta = _meta(queue_name(ws["id"]))
    meta["annotations"] = {"gemhub.io/workspace": str(ws.get("name", ""))}
    return {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": meta, "spec": spec}
