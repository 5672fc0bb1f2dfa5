"""spawner.runtime: kubernetes in gemhub.yaml -> a configured KubeGemSpawner."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from tornado import web
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kube.cluster import use_kubeconfig, write_kubeconfig  # noqa: E402

from gemhub.hub_config.configurer import ConfigError, build_config, merge_platform  # noqa: E402
from gemhub.spawner.kube.spawner import KubeGemSpawner  # noqa: E402

from config_inputs import INPUTS  # noqa: E402
KUBE = {"spawner": {"runtime": "kubernetes"},
        "kubernetes": {"namespace": "gemhub-users", "image": "registry.local/gemhub/notebook:2",
                       "storage_claim": "gemhub-homes", "datasets_claim": "", "cpu_guarantee_ratio": 0.5,
                       "hub_connect_ip": "gemhub-hub.gemhub.svc"}}


class Quota:
    async def list_workspaces(self, user):
        return [{"id": 4, "name": "vision", "personal": True, "projects": [{"id": 9, "name": "default"}]}]


@pytest.fixture(scope="module", autouse=True)
def kubeconfig(tmp_path_factory):
    restore = use_kubeconfig(write_kubeconfig(tmp_path_factory.mktemp("kube") / "config",
                                              "http://127.0.0.1:9"))
    yield
    restore()


def test_kubernetes_runtime_selects_and_configures_kube_gem_spawner():
    c = build_config(merge_platform(KUBE, {}), INPUTS)
    assert c["JupyterHub"]["spawner_class"] == "gemhub.spawner.kube.spawner.KubeGemSpawner"
    assert c["JupyterHub"]["hub_ip"] == "0.0.0.0"
    assert c["JupyterHub"]["hub_connect_ip"] == "gemhub-hub.gemhub.svc"
    kube = c["KubeGemSpawner"]
    assert kube["quota_url"] == c["LocalGemSpawner"]["quota_url"] and kube["quota_token"] == "qtok"
    assert kube["presets"] == c["LocalGemSpawner"]["presets"]
    assert kube["namespace"] == "gemhub-users" and kube["datasets_claim"] == ""
    assert kube["accelerator_profile"] == "native"


async def test_the_generated_configuration_loads_into_the_spawner():
    traits = build_config(merge_platform(KUBE, {}), INPUTS)["KubeGemSpawner"]
    sp = KubeGemSpawner(config=Config({"KubeGemSpawner": traits}), quota_client_factory=lambda u, t: Quota(),
                        user=types.SimpleNamespace(name="a", id=1, url="/user/a/", escaped_name="a"),
                        hub=types.SimpleNamespace(base_url="/hub/", api_url="http://h/hub/api"))
    assert (sp.image, sp.namespace, sp.storage_claim, sp.cpu_guarantee_ratio) == (
        "registry.local/gemhub/notebook:2", "gemhub-users", "gemhub-homes", 0.5)
    assert sp.catalog.names() == [p["name"] for p in merge_platform({}, {})["presets"]]
    # the spawn page is GemHub's form, not KubeSpawner's profile list
    html = await sp.options_form(sp)
    assert 'name="preset"' in html and 'data-name="vision" selected>vision (personal)</option>' in html
    with pytest.raises(web.HTTPError) as e:
        sp.options_from_form({"profile": ["gpu"]})
    assert e.value.status_code == 400


def test_default_platform_still_uses_the_local_runtime():
    c = build_config(merge_platform({}, {}), INPUTS)
    assert c["JupyterHub"]["spawner_class"].endswith("LocalGemSpawner")
    assert "KubeGemSpawner" not in c and c["JupyterHub"]["hub_ip"] == "127.0.0.1"


@pytest.mark.parametrize("kube, message", [
    ({"storage_claim": "Homes!"}, "kubernetes: storage_claim 'Homes!' is not a valid"),
    ({"datasets_sub_path": "/abs"}, "datasets_sub_path"),
    ({"mem_guarantee_ratio": 2}, "mem_guarantee_ratio must be in"),
    ({"cpu_guarantee_ratio": "half"}, "kubernetes.cpu_guarantee_ratio must be a number"),
    ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
    ({"namespace": 3}, "kubernetes.namespace must be text"),
    ({"nodes": 3}, "unknown key 'kubernetes.nodes'"),
])
def test_bad_kubernetes_settings_are_refused_with_the_key(kube, message):
    with pytest.raises(ConfigError, match=message):
        merge_platform({"spawner": {"runtime": "kubernetes"}, "kubernetes": kube}, {})
