"""A Kubernetes API over HTTP for tests: kmock's emulator plus the few things KubeSpawner
needs that kmock leaves out, and a kubelet driven by the test.

kmock stores what clients create and streams watch events; it does not fill in what the
API server would (namespace, uid, resourceVersion, status) and only recognises
``?watch=true`` while kubernetes_asyncio sends ``watch=True``. ``FakeCluster.run_pod``
plays the kubelet: it PATCHes the pod to Running with an IP and ready containers, through
the same HTTP API, so the spawner's watch sees a MODIFIED event as it would on a cluster.
"""

from __future__ import annotations

import datetime
import itertools
import uuid
from pathlib import Path

import aiohttp
import kmock
import yaml

NAMESPACE = "gemhub-test"


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig with one context for ``server`` (no credentials: kmock checks none)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                   "namespace": NAMESPACE}}],
    }))
    return path


def use_kubeconfig(path: Path):
    """Point kubernetes_asyncio's default kubeconfig at ``path`` (it reads $KUBECONFIG only
    at import time). Returns a function that restores the previous location."""
    from kubernetes_asyncio.config import kube_config

    previous = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)

    def restore():
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = previous

    return restore


class _ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's own fields on created objects."""

    _versions = itertools.count(1)

    async def __call__(self, raw_request):
        if raw_request.method == "GET" and raw_request.query.get("watch", "").lower() == "true":
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.update_query(watch="true"))
        return await super().__call__(raw_request)

    async def _handle(self, request):
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(next(self._versions))
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            request.data.setdefault("status", {"phase": "Pending"})
        elif request.action == kmock.action.UPDATE and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)


class FakeCluster:
    """``async with FakeCluster() as cluster:`` — an API server at ``cluster.url``."""

    def __init__(self, namespace: str = NAMESPACE):
        self.namespace = namespace
        self.api = _ApiServer()
        self._server = kmock.Server(self.api)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "FakeCluster":
        await self.api.__aenter__()
        await self._server.__aenter__()
        # declared so that listing them works before anything exists
        self.api.resources["v1/pods"] = {}
        self.api.resources["v1/events"] = {}
        self._http = aiohttp.ClientSession(base_url=self.url)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.close()
        await self._server.__aexit__(*exc)
        await self.api.__aexit__(*exc)

    @property
    def url(self) -> str:
        return str(self._server.url).rstrip("/")

    def _pods_path(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods" + (f"/{name}" if name else "")

    async def pods(self) -> list[dict]:
        async with self._http.get(self._pods_path()) as r:
            r.raise_for_status()
            return (await r.json())["items"]

    async def pod(self, name: str) -> dict | None:
        async with self._http.get(self._pods_path(name)) as r:
            if r.status == 404:
                return None
            r.raise_for_status()
            return await r.json()

    async def run_pod(self, name: str, ip: str = "10.1.2.3") -> None:
        """What the kubelet reports once the pod's containers are up."""
        pod = await self.pod(name)
        statuses = [{"name": c["name"], "ready": True, "restartCount": 0, "image": c.get("image", ""),
                     "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
                    for c in pod["spec"]["containers"]]
        await self._patch(name, {"status": {"phase": "Running", "podIP": ip, "containerStatuses": statuses}})

    async def exit_pod(self, name: str, code: int) -> None:
        """The notebook container ended with ``code``."""
        pod = await self.pod(name)
        statuses = [{"name": c["name"], "ready": False, "restartCount": 0, "image": c.get("image", ""),
                     "imageID": "", "state": {"terminated": {"exitCode": code}}}
                    for c in pod["spec"]["containers"]]
        await self._patch(name, {"status": {"phase": "Failed" if code else "Succeeded",
                                            "containerStatuses": statuses}})

    async def _patch(self, name: str, body: dict) -> None:
        async with self._http.patch(self._pods_path(name), json=body,
                                    headers={"Content-Type": "application/merge-patch+json"}) as r:
            r.raise_for_status()
