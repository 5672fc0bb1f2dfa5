"""A real hub with ``spawner.runtime: kubernetes``: REST spawn -> KubeGemSpawner creates the
pod on the fake API server -> the test kubelet runs it -> the hub proxies to it -> REST stop
deletes the pod. The cluster is kmock plus a kubelet that runs pods as local processes
(tests/kube/)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubproc import Hub, free_port, unique_name  # noqa: E402
from kube.cluster import NAMESPACE, write_kubeconfig  # noqa: E402
from kube.kubelet import BackgroundCluster  # noqa: E402

pytestmark = [pytest.mark.integration]
GIB = 1024**3


@pytest.fixture(scope="module")
def kube_hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("kube-hub")
    with BackgroundCluster(work / "kubelet") as bg:
        kubeconfig = write_kubeconfig(work / "kubeconfig", bg.cluster.url)
        hub = Hub(work / "hub", {
            "spawner": {"runtime": "kubernetes", "default_preset": "C1"},
            "presets": [{"name": "C1", "display_name": "C1", "cpu": 1, "memory": "1G"},
                        {"name": "C2", "display_name": "C2", "cpu": 2, "memory": "4G"}],
            "kubernetes": {"namespace": NAMESPACE, "image": "gemhub/notebook:test"},
        })
        # every pod is a process on this machine: give each hub its own notebook port
        wrapper = work / "jupyterhub_config.py"
        wrapper.write_text(f"load_subconfig({str(hub.hub_config)!r})\n"
                           f"c.KubeGemSpawner.port = {free_port()}\n")
        hub.hub_config = wrapper
        env = hub.env
        hub.env = lambda: {**env(), "KUBECONFIG": str(kubeconfig)}
        hub.start()
        try:
            yield hub, bg
        finally:
            hub.stop()


def wait_until(probe, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{probe} never became true")


def test_rest_spawn_reaches_the_pod_and_stop_deletes_it(kube_hub):
    hub, bg = kube_hub
    name, token = hub.create_user(unique_name("kube"))
    r = hub.api("POST", f"/users/{name}/server", json={"preset": "C2"})
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name)

    (pod,) = bg.call(bg.cluster.pods)
    (c,) = pod["spec"]["containers"]
    assert pod["metadata"]["namespace"] == NAMESPACE and c["image"] == "gemhub/notebook:test"
    assert c["resources"]["limits"] == {"cpu": 2.0, "memory": 4 * GIB}
    assert c["workingDir"] == "/gemini/code"
    paths = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/gemini/code", "/gemini/output", "/dev/shm"} <= paths

    # through the proxy to the server in the pod, with the user's own token
    r = hub.request("GET", f"/user/{name}/api/contents/code", token=token)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "directory"

    r = hub.api("DELETE", f"/users/{name}/server")
    assert r.status_code in (202, 204), r.text
    wait_until(lambda: not hub.api("GET", f"/users/{name}").json()["servers"])
    assert bg.call(bg.cluster.pods) == []


def test_bad_options_are_refused_before_any_pod_exists(kube_hub):
    hub, bg = kube_hub
    name, _ = hub.create_user(unique_name("kube"))
    r = hub.api("POST", f"/users/{name}/server", json={"preset": "XL"})
    assert r.status_code == 400 and "unknown preset" in r.json()["message"]
    assert bg.call(bg.cluster.pods) == []
