"""KubeGemSpawner against a Kubernetes API server over HTTP (kmock, tests/kube/cluster.py):
create the pod, see it Pending then Running through the watch, find it again after a hub
restart, notice its exit, delete it."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path

import pytest
import pytest_asyncio
from kubespawner import KubeSpawner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kube.cluster import FakeCluster, use_kubeconfig, write_kubeconfig  # noqa: E402

from gemhub.spawner.kube.spawner import KubeGemSpawner  # noqa: E402

# Own event loop: KubeSpawner caches its API client per loop, and this one must talk to
# this module's API server.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

GIB = 1024**3
PRESETS = [{"name": "B1", "display_name": "B1", "cpu": 1, "memory": "2G"},
           {"name": "S1", "display_name": "S1", "cpu": 2, "memory": "8G"}]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster(tmp_path_factory):
    async with FakeCluster() as c:
        restore = use_kubeconfig(write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", c.url))
        try:
            yield c
        finally:
            await KubeSpawner._stop_all_reflectors()
            restore()


class FakeQuota:
    async def resolve(self, user, **refs):
        return {"workspace": {"id": 5, "name": "vision"}, "project": {"id": 12, "name": "detector"}}

    async def list_workspaces(self, user):
        return []


def make_spawner(cluster: FakeCluster, user: str, state: dict | None = None) -> KubeGemSpawner:
    """A spawner as the hub makes one for ``user``'s default server (after a restart when
    ``state`` is the stored state)."""
    orm = types.SimpleNamespace(user_options={}, name="", state=state, server=None)
    hub_user = types.SimpleNamespace(name=user, id=7, url=f"/user/{user}/", escaped_name=user, server=None)
    hub = types.SimpleNamespace(base_url="/hub/", api_url="http://hub:8081/hub/api", public_host="",
                                url="http://hub:8081/hub/")
    sp = KubeGemSpawner(
        presets=PRESETS, default_preset="B1", quota_client_factory=lambda url, token: FakeQuota(),
        hub=hub, user=hub_user, orm_spawner=orm, api_token="secret-token",
        k8s_api_host=cluster.url, namespace=cluster.namespace, image="gemhub/notebook:1",
        start_timeout=20, k8s_api_request_retry_timeout=20, delete_grace_period=0,
    )
    if state:
        sp.load_state(state)
    return sp


async def eventually(probe, timeout: float = 15):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{probe} never became true")
        await asyncio.sleep(0.05)


async def test_start_poll_restart_and_stop(cluster):
    sp = make_spawner(cluster, "alice")
    await sp._run_apply_user_options({"preset": "S1"})
    starting = asyncio.ensure_future(sp.start())

    pod = await eventually(lambda: cluster.pod(sp.pod_name))
    (c,) = pod["spec"]["containers"]
    assert c["resources"] == {"limits": {"cpu": 2.0, "memory": 8 * GIB},
                              "requests": {"cpu": 2.0, "memory": 8 * GIB}}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/gemini/code"]["subPath"] == "workspaces/5/projects/12/code"
    assert mounts["/gemini/output"]["subPath"] == "workspaces/5/projects/12/output"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["GEMHUB_PROJECT"] == "detector" and env["NVIDIA_VISIBLE_DEVICES"] == "none"
    assert env["JUPYTERHUB_API_TOKEN"] == "secret-token"
    assert pod["metadata"]["labels"]["gemhub.io/project-id"] == "12"

    # the pod is scheduled but not running: start waits, poll says "still starting"
    await asyncio.sleep(0.3)
    assert not starting.done()
    assert await sp.poll() is None

    await cluster.run_pod(sp.pod_name, ip="10.20.30.40")
    assert await asyncio.wait_for(starting, 20) == "http://10.20.30.40:8888"
    assert await sp.poll() is None

    # a restarted hub rebuilds the spawner from its stored state and finds the pod
    state = sp.get_state()
    again = make_spawner(cluster, "alice", state)
    assert again.pod_name == sp.pod_name and await again.poll() is None

    await again.stop()
    assert await cluster.pod(sp.pod_name) is None
    assert await eventually(lambda: _poll_is(again, 1))


async def test_a_pod_that_exits_is_reported_and_removed(cluster):
    sp = make_spawner(cluster, "bob")
    await sp._run_apply_user_options({})
    starting = asyncio.ensure_future(sp.start())
    await eventually(lambda: cluster.pod(sp.pod_name))
    await cluster.run_pod(sp.pod_name)
    await asyncio.wait_for(starting, 20)

    await cluster.exit_pod(sp.pod_name, 3)
    assert await eventually(lambda: _poll_is(sp, 3))
    # delete_stopped_pods (KubeSpawner's default): the finished pod is deleted
    assert await cluster.pod(sp.pod_name) is None
    assert [p["metadata"]["name"] for p in await cluster.pods()] == []


async def _poll_is(sp: KubeGemSpawner, code: int) -> bool:
    return await sp.poll() == code
