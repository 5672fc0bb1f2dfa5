"""The rendered chart really starts: the hub, the proxy and GemHub's services run from the
Deployments helm/gemhub renders (their commands, environment, Secret and ConfigMap files
where z2jh's jupyterhub_config.py and GemHub's configuration read them), against the fake
Kubernetes API and test kubelet of the spawner tests (tests/kube/). A REST spawn goes
through it to the pod's JupyterLab, and the services the chart registers answer through the
proxy.

Everything runs in a private network namespace (the chart's fixed ports 8000/8001/8081 meet
nothing else on this machine) with the Services' names on its loopback (/etc/hosts in each
process's mount namespace), so root is required. PostgreSQL is Debian's, as the external
database the values name.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chartkit  # noqa: E402
import chartplatform  # noqa: E402
from chartplatform import SERVICES, wait_for  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture(scope="module")
def platform():
    reason = chartplatform.missing()
    if reason:
        pytest.skip(reason)
    artifacts = Path(os.environ.get("GEMHUB_TEST_ARTIFACTS", chartkit.REPO / "test-artifacts")) / "chart-hub"
    with chartplatform.running(artifacts=artifacts) as p:
        yield p


def test_rest_spawn_through_the_rendered_hub_reaches_jupyterlab(platform):
    p = platform
    admin = p.admin_token()
    name = "alice"
    token = p.user(name)

    r = p.api("POST", f"/users/{name}/server", token, json={"preset": "B1"})
    assert r.status_code in (201, 202), r.text
    p.wait_ready(name)

    (pod,) = p.bg.call(p.bg.cluster.pods)
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "gemhub/notebook:test"  # z2jh's singleuser.image
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"gemini-storage": "gemhub-workspaces"}  # the chart's RWX claim
    assert c["workingDir"] == "/gemini/code"
    assert pod["metadata"]["labels"]["release"] == chartkit.RELEASE  # z2jh's common labels
    # the real pod's labels get through no GemHub NetworkPolicy but the SSH gateway's port
    for policy in (o for o in p.cluster.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].startswith("gemhub-")):
        for rule in chartkit.admits(policy, pod["metadata"]["labels"]):
            assert rule.get("ports") == [{"port": "ssh"}], (policy["metadata"]["name"], rule)

    r = p.get(f"/user/{name}/api/contents/code", token)
    assert r.status_code == 200 and r.json()["type"] == "directory", r.text
    r = p.get(f"/user/{name}/lab", token)
    assert r.status_code == 200 and "JupyterLab" in r.text

    r = p.api("DELETE", f"/users/{name}/server", token)
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: not p.api("GET", f"/users/{name}", admin).json()["servers"], "stop")
    wait_for(lambda: p.bg.call(p.bg.cluster.pods) == [], "pod deletion")


def test_services_registered_by_the_chart_answer_through_the_hub(platform):
    p = platform
    admin = p.admin_token()
    services = {s["name"]: s for s in p.api("GET", "/services", admin).json().values()}
    for name in SERVICES:
        assert services[name]["url"] == f"http://gemhub-{name}:{8181 + SERVICES.index(name)}"
        assert services[name]["display"] is True
    assert services["idle-culler"]["command"]  # GemHub's culler, in the hub pod

    token = p.user("bob")
    r = p.get("/services/quota/api/v1/workspaces", token)
    assert r.status_code == 200, r.text
    assert [w["personal"] for w in r.json()["items"]] == [True]
    r = p.get("/services/data/api/v1/assets", token)
    assert r.status_code == 200, r.text
    r = p.get("/services/ssh/api/v1/keys", token)
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    # without a token the services refuse, as behind any hub
    assert p.get("/services/quota/api/v1/workspaces").status_code in (401, 403)

    # the SSH gateway's own port (the gateway Service's target)
    with socket.create_connection(("127.0.0.1", 2222), timeout=10) as s:
        assert s.recv(64).startswith(b"SSH-2.0-")
