"""Quotas mirrored into Kueue: every rendered object validated against Kueue's published CRD
schemas (../shared/crds), applied by the quota service through a Kubernetes API over HTTP
(kmock, the spawners' fake cluster: tests/kube/cluster.py) and kept equal as quotas change,
and KubeGemSpawner's pods carrying their LocalQueue, priority class and ledger entry."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import types
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
import pytest_asyncio
import yaml
from kubespawner import KubeSpawner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from kube.cluster import FakeCluster, use_kubeconfig, write_kubeconfig  # noqa: E402
from test_quota_support import QuotaUnderTest  # noqa: E402

from gemhub.services.quota import kube_sync, kueue  # noqa: E402
from gemhub.spawner.accelerators import default_registry  # noqa: E402
from gemhub.spawner.kube.spawner import KubeGemSpawner  # noqa: E402

pytestmark = [pytest.mark.integration]
on_module_loop = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
LEVELS = {"low": 0, "normal": 100, "high": 200}
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def crds_dir() -> Path | None:
    candidates = [os.environ.get("GEMHUB_CRDS_DIR", ""), REPO.parent / "shared" / "crds",
                  REPO.parent.parent / "shared" / "crds", REPO / "shared" / "crds"]
    for c in candidates:
        if c and (Path(c) / "kueue.x-k8s.io_clusterqueues.yaml").exists():
            return Path(c)
    return None


def schemas() -> dict[str, dict]:
    found = crds_dir()
    if found is None:
        pytest.skip("Kueue's CRDs are not here (../shared/crds, or set GEMHUB_CRDS_DIR)")
    out = {}
    for kind, plural in kueue.KINDS.items():
        crd = yaml.safe_load((found / f"kueue.x-k8s.io_{plural}.yaml").read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == kueue.VERSION]
        assert version["served"], f"{kind} {kueue.VERSION} is not served"
        out[kind] = version["schema"]["openAPIV3Schema"]
    return out


def validate(objects: list[dict]) -> None:
    """Each object against its CRD schema, plus the CEL rules jsonschema cannot run."""
    by_kind = schemas()
    for obj in objects:
        jsonschema.validate(obj, by_kind[obj["kind"]])
        name = obj["metadata"]["name"]
        assert NAME.match(name) and len(name) <= 63, name
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gemhub"
        if obj["kind"] == "ClusterQueue":
            spec = obj["spec"]
            # "borrowingLimit must be nil when cohort is empty"
            if "cohort" not in spec:
                assert all("borrowingLimit" not in r for g in spec["resourceGroups"]
                           for f in g["flavors"] for r in f["resources"])
            covered = [r for g in spec["resourceGroups"] for r in g["coveredResources"]]
            assert len(covered) == len(set(covered))
            for g in spec["resourceGroups"]:
                for f in g["flavors"]:
                    assert [r["name"] for r in f["resources"]] == g["coveredResources"]


WORKSPACES = [
    {"id": 1, "name": "vision", "cohort": "lab", "limits": {
        "cpu": Decimal(16), "memory_mib": Decimal(65536), "accelerator:A100-80G": Decimal("2.5"),
        "accelerator:RTX4090": Decimal(4), "jobs": Decimal(3)},
     "borrowing": {"accelerator:A100-80G": Decimal(1)}},
    {"id": 2, "name": "语音 team", "cohort": "lab", "limits": {"accelerator:A100-80G": Decimal(1)}, "borrowing": {}},
    {"id": 3, "name": "solo", "cohort": None, "limits": {"accelerator:910B": Decimal(8)},
     "borrowing": {"accelerator:910B": Decimal(2)}},
]


def test_rendered_objects_are_valid_kueue_objects():
    objects = kueue.render(WORKSPACES, LEVELS, default_registry(), "gemhub")
    validate(objects)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("ResourceFlavor") == 4 and kinds.count("WorkloadPriorityClass") == 3
    assert kinds.count("ClusterQueue") == kinds.count("LocalQueue") == 3
    by_name = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterQueue"}
    vision = by_name["gemhub-ws-1"]["spec"]
    assert vision["cohort"] == "gemhub-lab" and by_name["gemhub-ws-2"]["spec"]["cohort"] == "gemhub-lab"
    cpu_mem = vision["resourceGroups"][0]["flavors"][0]["resources"]
    assert cpu_mem == [{"name": "cpu", "nominalQuota": "16"}, {"name": "memory", "nominalQuota": "65536Mi"}]
    gpu = next(g for g in vision["resourceGroups"] if g["coveredResources"] == ["nvidia.com/gpu"])
    a100 = next(f for f in gpu["flavors"] if f["name"] == "gemhub-a100-80g-" + kueue.slug("A100-80G")[-8:])
    assert a100["resources"] == [{"name": "nvidia.com/gpu", "nominalQuota": 2, "borrowingLimit": 1}]
    # the solo workspace has no cohort, so its borrowing limit is not rendered (Kueue refuses it)
    solo = by_name["gemhub-ws-3"]["spec"]
    assert "cohort" not in solo and "borrowingLimit" not in str(solo)
    assert by_name["gemhub-ws-3"]["metadata"]["annotations"]["gemhub.io/workspace"] == "solo"
    flavor = next(o for o in objects if o["kind"] == "ResourceFlavor" and "a100" in o["metadata"]["name"])
    assert flavor["spec"]["nodeLabels"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    queues = [o for o in objects if o["kind"] == "LocalQueue"]
    assert {q["metadata"]["namespace"] for q in queues} == {"gemhub"}
    assert {q["spec"]["clusterQueue"] for q in queues} == {"gemhub-ws-1", "gemhub-ws-2", "gemhub-ws-3"}
    classes = {o["metadata"]["name"]: o["value"] for o in objects if o["kind"] == "WorkloadPriorityClass"}
    assert classes == {"gemhub-low": 0, "gemhub-normal": 100, "gemhub-high": 200}
    assert kueue.pod_labels(2, 150, LEVELS) == {"kueue.x-k8s.io/queue-name": "gemhub-ws-2",
                                                "kueue.x-k8s.io/priority-class": "gemhub-normal"}
    assert kueue.slug("Lab") != kueue.slug("lab")  # injective: a changed name gets a hash


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster(tmp_path_factory):
    async with FakeCluster() as c:
        for plural in kueue.KINDS.values():
            c.api.resources[f"{kueue.GROUP}/{kueue.VERSION}/{plural}"] = {}
        restore = use_kubeconfig(write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", c.url))
        try:
            yield c
        finally:
            await KubeSpawner._stop_all_reflectors()
            restore()


async def kueue_objects(cluster: FakeCluster) -> dict[str, dict]:
    out = {}
    for plural in kueue.KINDS.values():
        path = (f"/apis/{kueue.GROUP}/{kueue.VERSION}/namespaces/{cluster.namespace}/{plural}"
                if plural == "localqueues" else f"/apis/{kueue.GROUP}/{kueue.VERSION}/{plural}")
        async with cluster._http.get(path) as r:
            r.raise_for_status()
            for item in (await r.json())["items"]:
                out[f"{item['kind']}/{item['metadata']['name']}"] = item
    return out


@on_module_loop
async def test_the_quota_service_applies_and_updates_kueue_objects(cluster, tmp_path):
    platform = {"runtime": "kubernetes", "kueue": {"enabled": True, "namespace": cluster.namespace},
                "priority_levels": LEVELS, "max_priority": 200,
                "presets": [{"name": "B1", "cpu": 1, "memory": "1G"}]}
    async with QuotaUnderTest(tmp_path, platform=platform) as q:
        q.hub.admins.add("root")
        root, alice = q.user("root"), q.user("alice")
        ws = (await q.call("POST", "api/v1/workspaces", alice, json={"name": "vision"})).json()
        r = await q.call("PUT", f"api/v1/workspaces/{ws['id']}/quota", root, json={
            "quota": {"cpu": 8, "memory": "32G", "accelerators": {"A100-80G": 2}},
            "borrowing": {"accelerators": {"A100-80G": 1}}, "cohort": "lab"})
        assert r.status_code == 200, r.text
        await q.service.sync_kueue()
        objects = await kueue_objects(cluster)
        cq = objects[f"ClusterQueue/{kueue.queue_name(ws['id'])}"]
        validate([{k: v for k, v in o.items() if k != "status"} for o in objects.values()])
        assert cq["spec"]["cohort"] == "gemhub-lab"
        gpu = next(g for g in cq["spec"]["resourceGroups"] if g["coveredResources"] == ["nvidia.com/gpu"])
        assert gpu["flavors"][0]["resources"] == [{"name": "nvidia.com/gpu", "nominalQuota": 2, "borrowingLimit": 1}]
        assert objects[f"LocalQueue/{kueue.queue_name(ws['id'])}"]["spec"]["clusterQueue"] == cq["metadata"]["name"]
        assert {n for n in objects if n.startswith("WorkloadPriorityClass/")} == {
            "WorkloadPriorityClass/gemhub-low", "WorkloadPriorityClass/gemhub-normal",
            "WorkloadPriorityClass/gemhub-high"}
        # a quota change reaches the cluster (the changed fields only: a merge patch)
        r = await q.call("PUT", f"api/v1/workspaces/{ws['id']}/quota", root,
                         json={"quota": {"cpu": 4, "accelerators": {"A100-80G": 3}}})
        assert r.status_code == 200
        await q.service.sync_kueue()
        cq = (await kueue_objects(cluster))[f"ClusterQueue/{kueue.queue_name(ws['id'])}"]
        cpu = cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
        gpu = next(g for g in cq["spec"]["resourceGroups"] if g["coveredResources"] == ["nvidia.com/gpu"])
        assert cpu == {"name": "cpu", "nominalQuota": "4"}
        assert gpu["flavors"][0]["resources"][0]["nominalQuota"] == 3
        # a deleted workspace's queues go; what GemHub does not manage is left alone
        foreign = {"apiVersion": kueue.API_VERSION, "kind": "ResourceFlavor",
                   "metadata": {"name": "someone-elses"}, "spec": {}}
        async with cluster._http.post(f"/apis/{kueue.GROUP}/{kueue.VERSION}/resourceflavors", json=foreign) as r:
            r.raise_for_status()
        assert (await q.call("DELETE", f"api/v1/workspaces/{ws['id']}", alice)).status_code == 204
        await q.service.sync_kueue()
        names = set(await kueue_objects(cluster))
        assert f"ClusterQueue/{kueue.queue_name(ws['id'])}" not in names
        assert f"LocalQueue/{kueue.queue_name(ws['id'])}" not in names
        assert "ResourceFlavor/someone-elses" in names


class LedgerQuota:
    """The spawner's quota client for a pod test: resolve, and an admission with Kueue labels."""

    released: list[int] = []

    async def resolve(self, user, workspace_id=None, project_id=None, workspace=None, project=None):
        return {"workspace": {"id": 5, "name": "vision"}, "project": {"id": 12, "name": "detector"}}

    async def list_workspaces(self, user):
        return []

    async def admit(self, user, body):
        assert body["holder"] == f"server:{user}/" and body["workspace_id"] == 5
        return {"id": 41, "state": "admitted", "ledger": "abc123", "placement": None,
                "labels": kueue.pod_labels(5, 200, LEVELS)}

    async def admission(self, ident, user):
        raise AssertionError("an admitted entry is not polled")

    async def release(self, ident, user, reason="released"):
        self.released.append(ident)

    async def aclose(self):
        pass


@on_module_loop
async def test_a_kube_servers_pod_carries_its_queue_priority_and_ledger_entry(cluster):
    hub_user = types.SimpleNamespace(name="kim", id=9, url="/user/kim/", escaped_name="kim", server=None)
    sp = KubeGemSpawner(
        presets=[{"name": "B1", "cpu": 1, "memory": "1G"}], default_preset="B1",
        quota_client_factory=lambda url, token: LedgerQuota(),
        hub=types.SimpleNamespace(base_url="/hub/", api_url="http://hub:8081/hub/api", public_host="",
                                  url="http://hub:8081/hub/"),
        user=hub_user, orm_spawner=None, api_token="t", k8s_api_host=cluster.url,
        namespace=cluster.namespace, image="gemhub/notebook:1", start_timeout=20,
        k8s_api_request_retry_timeout=20, delete_grace_period=0)
    await sp._run_apply_user_options({})
    starting = asyncio.ensure_future(sp.start())
    deadline = asyncio.get_running_loop().time() + 20
    while (pod := await cluster.pod(sp.pod_name)) is None:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    labels = pod["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "gemhub-ws-5"
    assert labels["kueue.x-k8s.io/priority-class"] == "gemhub-high"
    assert labels["gemhub.io/admission"] == "abc123.41"
    await cluster.run_pod(sp.pod_name)
    await asyncio.wait_for(starting, 20)
    assert sp.get_state()["admission_id"] == 41
    await sp.stop()
    await sp.run_post_stop_hook()
    assert LedgerQuota.released == [41]
    # the quota service's reconciliation finds pods by that label
    assert await kube_sync.labelled_pods(cluster.namespace, "abc123") == {}
