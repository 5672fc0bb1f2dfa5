"""The quota service and the Kubernetes API: Kueue objects kept equal to the quotas, and pods
of closed ledger entries found by reconciliation.

What the quota service's service account needs (the Helm chart grants it):

- ``kueue.x-k8s.io``: ``resourceflavors``, ``clusterqueues``, ``workloadpriorityclasses``
  (cluster-scoped) and ``localqueues`` (in the servers' namespace): get, list, create,
  patch, delete;
- core ``pods`` in the servers' namespace: list, delete (orphans of closed entries).

Objects GemHub manages carry ``app.kubernetes.io/managed-by: gemhub``; only those are ever
replaced or deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from . import kueue

log = logging.getLogger("gemhub.quota.kube")
ADMISSION_LABEL = "gemhub.io/admission"
SELECTOR = "app.kubernetes.io/managed-by=gemhub"


async def api_client():
    """A kubernetes_asyncio ApiClient: in-cluster credentials, else the kubeconfig."""
    from kubernetes_asyncio import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()
    return client.ApiClient()


async def apply(objects: list[dict], namespace: str) -> dict[str, int]:
    """Create or replace every object; delete GemHub's objects that are no longer rendered."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    counts = {"created": 0, "replaced": 0, "deleted": 0}
    async with await api_client() as api:
        custom = client.CustomObjectsApi(api)
        wanted: dict[str, set[str]] = {}
        for obj in objects:
            plural = kueue.KINDS[obj["kind"]]
            name = obj["metadata"]["name"]
            wanted.setdefault(plural, set()).add(name)
            namespaced = plural == "localqueues"
            args = (kueue.GROUP, kueue.VERSION, namespace, plural) if namespaced else \
                (kueue.GROUP, kueue.VERSION, plural)
            try:
                current = await (custom.get_namespaced_custom_object(*args, name) if namespaced
                                 else custom.get_cluster_custom_object(*args, name))
            except ApiException as e:
                if e.status != 404:
                    raise
                await (custom.create_namespaced_custom_object(*args, obj) if namespaced
                       else custom.create_cluster_custom_object(*args, obj))
                counts["created"] += 1
                continue
            if current.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/managed-by") != "gemhub":
                log.warning("kueue: %s %s exists and is not GemHub's; left alone", obj["kind"], name)
                continue
            patch = managed_patch(current, obj)
            if not patch:
                continue
            await (custom.patch_namespaced_custom_object(*args, name, patch) if namespaced
                   else custom.patch_cluster_custom_object(*args, name, patch))
            counts["replaced"] += 1
        for plural in kueue.KINDS.values():
            namespaced = plural == "localqueues"
            args = (kueue.GROUP, kueue.VERSION, namespace, plural) if namespaced else \
                (kueue.GROUP, kueue.VERSION, plural)
            listing = await (custom.list_namespaced_custom_object(*args, label_selector=SELECTOR) if namespaced
                             else custom.list_cluster_custom_object(*args, label_selector=SELECTOR))
            for item in listing.get("items", []):
                name = item["metadata"]["name"]
                labels = item["metadata"].get("labels") or {}
                if name in wanted.get(plural, set()) or labels.get("app.kubernetes.io/managed-by") != "gemhub":
                    continue
                await (custom.delete_namespaced_custom_object(*args, name) if namespaced
                       else custom.delete_cluster_custom_object(*args, name))
                counts["deleted"] += 1
    return counts


def merge_patch(current: Any, wanted: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``current`` into ``wanted``."""
    if not isinstance(current, dict) or not isinstance(wanted, dict):
        return wanted
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        if key not in current:
            patch[key] = value
        elif current[key] != value:
            sub = merge_patch(current[key], value)
            if sub != {} or value == {}:
                patch[key] = sub
    for key in current:
        if key not in wanted:
            patch[key] = None
    return patch


def managed_patch(current: dict, wanted: dict) -> dict:
    """The merge patch of the parts GemHub owns (spec, value, description, its labels and
    annotations); the server's own fields (status, uid, resourceVersion...) are left alone."""
    mine = {k: wanted[k] for k in ("spec", "value", "description") if k in wanted}
    theirs = {k: current.get(k) for k in mine}
    patch = merge_patch(theirs, mine)
    meta: dict[str, Any] = {}
    for part in ("labels", "annotations"):
        want = wanted["metadata"].get(part) or {}
        have = current.get("metadata", {}).get(part) or {}
        diff = {k: v for k, v in want.items() if have.get(k) != v}
        if diff:
            meta[part] = diff
    if meta:
        patch["metadata"] = meta
    return patch


async def labelled_pods(namespace: str, ledger_id: str) -> dict[int, list[str]]:
    """admission id -> names of this ledger's pods in ``namespace``."""
    from kubernetes_asyncio import client

    out: dict[int, list[str]] = {}
    async with await api_client() as api:
        pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=ADMISSION_LABEL)
        for pod in pods.items:
            value = (pod.metadata.labels or {}).get(ADMISSION_LABEL, "")
            mine, _, ident = value.partition(".")
            if mine == ledger_id and ident.isascii() and ident.isdigit():
                out.setdefault(int(ident), []).append(pod.metadata.name)
    return out


async def delete_pods(namespace: str, names: list[str]) -> None:
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    async with await api_client() as api:
        core = client.CoreV1Api(api)
        for name in names:
            try:
                await core.delete_namespaced_pod(name, namespace)
            except ApiException as e:
                if e.status != 404:
                    raise


def workspaces_for_kueue(session) -> list[dict[str, Any]]:
    """Every workspace's quota as :func:`kueue.render` takes it (a session's read)."""
    from sqlalchemy import select

    from . import quotas
    from .models import QuotaLimit, Workspace

    rows = {r.workspace_id: r for r in session.scalars(select(QuotaLimit).where(QuotaLimit.username == ""))}
    out = []
    for ws in session.scalars(select(Workspace).order_by(Workspace.id)):
        row = rows.get(ws.id)
        out.append({"id": ws.id, "name": ws.name, "cohort": ws.cohort,
                    "limits": quotas.limits_from_json(row.limits) if row else {},
                    "borrowing": quotas.limits_from_json(row.borrowing) if row else {}})
    return out
