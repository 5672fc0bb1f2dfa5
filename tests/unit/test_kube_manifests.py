"""KubeGemSpawner's pods, built by KubeSpawner's real get_pod_manifest() without a cluster
(a kubeconfig pointing nowhere) and validated against the Kubernetes 1.30 schema."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import types
from pathlib import Path

import kubernetes_validate
import pytest
from tornado import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kube.cluster import use_kubeconfig, write_kubeconfig  # noqa: E402

from gemhub.lab import limits  # noqa: E402
from gemhub.spawner.kube import manifests  # noqa: E402
from gemhub.spawner.kube.manifests import ManifestError, StorageSettings  # noqa: E402
from gemhub.spawner.request import DatasetMount, RequestError  # noqa: E402
from gemhub.spawner.kube.spawner import KubeGemSpawner  # noqa: E402
from gemhub.spawner.presets import Preset  # noqa: E402
from gemhub.spawner.request import Ref, WorkloadRequest  # noqa: E402

K8S_VERSION = "1.30.0"
GIB = 1024**3
PRESETS = [{"name": "B1", "display_name": "B1 · basic", "cpu": 2, "memory": "4G", "description": "dev"}]


@pytest.fixture(scope="module", autouse=True)
def kubeconfig(tmp_path_factory):
    # 127.0.0.1:9 (discard): nothing here talks to it; KubeSpawner only needs a config to load
    restore = use_kubeconfig(write_kubeconfig(tmp_path_factory.mktemp("kube") / "config",
                                              "http://127.0.0.1:9"))
    yield
    restore()


class FakeQuota:
    async def resolve(self, user, **refs):
        return {"workspace": {"id": 3, "name": "lab"}, "project": {"id": 8, "name": "default"}}

    async def list_workspaces(self, user):
        return []


def make_spawner(**traits) -> KubeGemSpawner:
    orm = types.SimpleNamespace(user_options={}, name="", state=None, server=None)
    user = types.SimpleNamespace(name="alice", id=1, url="/user/alice/", escaped_name="alice", server=None)
    hub = types.SimpleNamespace(base_url="/hub/", api_url="http://hub:8081/hub/api", public_host="",
                                url="http://hub:8081/hub/")
    traits.setdefault("presets", PRESETS)
    traits.setdefault("default_preset", PRESETS[0]["name"])
    return KubeGemSpawner(quota_client_factory=lambda url, token: FakeQuota(), hub=hub, user=user,
                          orm_spawner=orm, namespace="gemhub", image="gemhub/notebook:1", **traits)


def dataset(slot: str, id: int, version: int) -> DatasetMount:
    return DatasetMount(slot, "dataset", id, version)


def request_for(accelerator: str = "0", memory: int = 16 * GIB, cpu: float = 4, **fields) -> WorkloadRequest:
    preset = Preset(name="P1", display_name="P1", cpu=cpu, memory=memory, accelerator=accelerator)
    return WorkloadRequest(user="alice", workspace=Ref(3, "lab"), project=Ref(8, "default"),
                           preset=preset, **fields)


async def pod_for(sp: KubeGemSpawner, request: WorkloadRequest | None = None) -> dict:
    if request is None:
        await sp._run_apply_user_options({})
    else:
        sp.workload = request
    await sp.load_user_options()
    pod = sp.api.api_client.sanitize_for_serialization(await sp.get_pod_manifest())
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    return pod


def container(pod: dict) -> dict:
    (c,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return c


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(pod)["env"]}


def mounts_of(pod: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in container(pod)["volumeMounts"]}


async def test_cpu_only_pod_has_limits_gemini_volumes_and_no_gpus():
    pod = await pod_for(make_spawner())
    c = container(pod)
    assert c["resources"]["limits"] == {"cpu": 2.0, "memory": 4 * GIB}
    assert c["resources"]["requests"] == {"cpu": 2.0, "memory": 4 * GIB}
    assert c["workingDir"] == "/gemini/code"
    env = env_of(pod)
    assert env["MEM_LIMIT"] == str(4 * GIB) and env["CPU_LIMIT"] == "2"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "none"
    accel = json.loads(env["GEMHUB_ACCELERATOR"])
    assert (accel["spec"], accel["kind"], accel["devices"], accel["runtime"]) == ("0", "none", [], "kubernetes")
    assert env["GEMHUB_WORKSPACE"] == "lab" and env["GEMHUB_PRESET"] == "B1"
    mounts = mounts_of(pod)
    assert mounts["/gemini/code"] == {"name": "gemini-storage", "mountPath": "/gemini/code",
                                      "subPath": "workspaces/3/projects/8/code"}
    assert mounts["/gemini/output"]["subPath"] == "workspaces/3/projects/8/output"
    assert "readOnly" not in mounts["/gemini/code"]
    assert mounts["/dev/shm"]["name"] == "dshm"
    assert not any(p.startswith("/gemini/data") or p.startswith("/gemini/pretrain") for p in mounts)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["gemini-storage"]["persistentVolumeClaim"] == {"claimName": "gemhub-storage"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert pod["metadata"]["labels"]["gemhub.io/workspace-id"] == "3"
    assert pod["metadata"]["annotations"]["gemhub.io/preset"] == "B1"
    assert env["JUPYTERHUB_ROOT_DIR"] == "/gemini"  # so default_url /lab/tree/code is the project
    assert "GEMHUB_STOP_AT" not in env and "PIP_INDEX_URL" not in env


class LimitedQuota(FakeQuota):
    async def resolve(self, user, **refs):
        answer = await super().resolve(user, **refs)
        answer["workspace"]["max_runtime_minutes"] = 90
        return answer


async def test_pod_gets_pip_mirrors_and_the_workspace_run_time_deadline():
    sp = make_spawner(lab_mirrors={"pip_index_url": "https://pypi.example/simple",
                                   "pip_trusted_host": "pypi.example"})
    sp.quota_client_factory = lambda url, token: LimitedQuota()
    before = datetime.datetime.now(datetime.timezone.utc)
    env = env_of(await pod_for(sp))
    assert env["PIP_INDEX_URL"] == "https://pypi.example/simple" and env["PIP_TRUSTED_HOST"] == "pypi.example"
    assert "PIP_CONFIG_FILE" not in env  # the hub's files are not in the pod
    stop_at = limits.parse_deadline(env["GEMHUB_STOP_AT"])
    assert datetime.timedelta(minutes=89) < stop_at - before <= datetime.timedelta(minutes=91)
    # the idle culler reads the deadline from the spawner state, and a restarted hub keeps it
    state = sp.get_state()
    assert limits.parse_deadline(state["stop_at"]) == stop_at
    again = make_spawner()
    again.load_state(state)
    assert again.stop_at == stop_at
    again.clear_state()
    assert again.stop_at is None and "stop_at" not in again.get_state()


async def test_datasets_and_models_mount_read_only_from_the_datasets_claim():
    sp = make_spawner(datasets_claim="shared-data", datasets_sub_path="gemhub", storage_claim="homes",
                      storage_sub_path="state")
    request = request_for(mounts=(dataset("data-1", 14, 2), dataset("data-2", 9, 1),
                                  DatasetMount("pretrain1", "model", 31, 3)))
    pod = await pod_for(sp, request)
    mounts = mounts_of(pod)
    assert mounts["/gemini/data-1"] == {"name": "gemini-datasets", "mountPath": "/gemini/data-1",
                                        "subPath": "gemhub/datasets/14/2", "readOnly": True}
    assert mounts["/gemini/data-2"]["subPath"] == "gemhub/datasets/9/1"
    assert mounts["/gemini/pretrain1"]["subPath"] == "gemhub/models/31/3"
    assert mounts["/gemini/pretrain1"]["readOnly"] is True
    assert "/gemini/data-3" not in mounts
    assert mounts["/gemini/code"]["subPath"] == "state/workspaces/3/projects/8/code"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["gemini-datasets"]["persistentVolumeClaim"] == {"claimName": "shared-data", "readOnly": True}
    assert volumes["gemini-storage"]["persistentVolumeClaim"] == {"claimName": "homes"}


async def test_names_are_literal_in_the_pod_not_templates():
    request = dataclasses.replace(request_for(), workspace=Ref(3, "team {username}"))
    pod = await pod_for(make_spawner(extra_annotations={"owner": "{username}"}), request)
    assert pod["metadata"]["annotations"]["gemhub.io/workspace"] == "team {username}"
    assert pod["metadata"]["annotations"]["owner"] == "alice"  # the admin's template still expands
    assert env_of(pod)["GEMHUB_WORKSPACE"] == "team {username}"


async def test_configured_values_are_kept_and_each_start_begins_from_them():
    sp = make_spawner(extra_annotations={"team": "ml"}, node_selector={"pool": "notebooks"},
                      volumes=[{"name": "certs", "secret": {"secretName": "ca"}}],
                      volume_mounts=[{"name": "certs", "mountPath": "/etc/ca"}],
                      cpu_guarantee_ratio=0.5, mem_guarantee_ratio=0.25)
    first = await pod_for(sp, request_for(mounts=(dataset("data-1", 14, 2),)))
    second = await pod_for(sp, request_for(cpu=1, memory=2 * GIB))
    assert "/gemini/data-1" in mounts_of(first) and "/gemini/data-1" not in mounts_of(second)
    for pod in (first, second):
        assert pod["metadata"]["annotations"]["team"] == "ml"
        assert pod["spec"]["nodeSelector"] == {"pool": "notebooks"}
        assert mounts_of(pod)["/etc/ca"]["name"] == "certs"
        assert [v["name"] for v in pod["spec"]["volumes"]].count("certs") == 1
    assert container(second)["resources"] == {"limits": {"cpu": 1.0, "memory": 2 * GIB},
                                              "requests": {"cpu": 0.5, "memory": GIB // 2}}


async def test_two_mounts_on_one_slot_are_a_400_with_the_reason():
    # wrong kinds, slots and ids cannot even be built (DatasetMount checks them)
    message = "same slot"
    sp = make_spawner()
    sp.workload = request_for(mounts=(dataset("data-1", 1, 1), dataset("data-1", 2, 1)))
    with pytest.raises(web.HTTPError) as e:
        await sp.load_user_options()
    assert e.value.status_code == 400 and message in e.value.jupyterhub_message


async def test_mounts_without_a_datasets_claim_are_refused():
    sp = make_spawner(datasets_claim="")
    sp.workload = request_for(mounts=(dataset("data-1", 14, 2),))
    with pytest.raises(web.HTTPError) as e:
        await sp.load_user_options()
    assert "no datasets_claim" in e.value.jupyterhub_message


@pytest.mark.parametrize("traits, message", [
    ({"storage_claim": "Bad_Name"}, "not a valid PersistentVolumeClaim"),
    ({"storage_sub_path": "../up"}, "relative path"),
    ({"mem_guarantee_ratio": 0.0}, "(0, 1]"),
    ({"accelerator_profile": "mps"}, "accelerator_profile"),
])
async def test_bad_configuration_is_refused_when_set(traits, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace("[", r"\[")):
        make_spawner(**traits)


def test_dataset_mount_checks_its_slot():
    with pytest.raises(RequestError, match="a dataset mounts on data-1"):
        DatasetMount("pretrain1", "dataset", 7, 1)
    with pytest.raises(RequestError, match="whole number"):
        DatasetMount("data-1", "dataset", "../x", 1)
    assert DatasetMount("data-3", "dataset", 12, 4).sub_path == "datasets/12/4"
    assert manifests.quantity(3 * 1024**2) == "3Mi" and manifests.quantity(1000) == "1000"
    with pytest.raises(ManifestError):
        StorageSettings(storage_claim="")


# -- accelerators: the registry's rendering in real pods --------------------------------------
ACCEL_CASES = [
    # spec, profile, extended resources (limits == requests), annotations that must be present
    ("1(A100-80G)", "native", {"nvidia.com/gpu": "1"}, set()),
    ("0.5", "hami", {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50",
                     "nvidia.com/gpucores": "50"}, set()),
    ("0.5(A100-80G)", "hami", {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50",
                               "nvidia.com/gpucores": "50"}, {"nvidia.com/use-gputype"}),
    ("1(mig-1g.10gb)", "native", {"nvidia.com/mig-1g.10gb": "1"}, set()),
    ("0.5", "native", {"nvidia.com/gpu.shared": "1"}, {"gemhub.io/accelerator-sharing"}),
    ("1(Ascend910-4c)", "native", {"huawei.com/Ascend910-4c": "1"}, set()),
    ("0.5(A100-80G)", "volcano", {"volcano.sh/vgpu-number": "1", "volcano.sh/vgpu-memory": "40960",
                                  "volcano.sh/vgpu-cores": "50"}, set()),
]


@pytest.mark.parametrize("spec, profile, resources, annotations", ACCEL_CASES)
async def test_accelerator_pods(spec, profile, resources, annotations):
    from gemhub.spawner import accelerators

    pod = await pod_for(make_spawner(accelerator_profile=profile), request_for(spec))
    c = container(pod)
    for side in ("limits", "requests"):
        extended = {k: v for k, v in c["resources"][side].items() if k not in ("cpu", "memory")}
        assert {k: extended.get(k) for k in resources} == resources
        assert set(extended) <= set(resources) | {"nvidia.com/gpumem", "volcano.sh/vgpu-memory"}
    assert c["resources"]["limits"]["memory"] == 16 * GIB
    assert annotations <= set(pod["metadata"]["annotations"])
    env = env_of(pod)
    assert "NVIDIA_VISIBLE_DEVICES" not in env  # the device plugin sets it
    accel = json.loads(env["GEMHUB_ACCELERATOR"])
    canonical = accelerators.parse(spec)
    assert (accel["spec"], accel["kind"]) == (accelerators.format(canonical), canonical.kind)
    assert pod["spec"].get("schedulerName") == ("volcano" if profile == "volcano" else None)
    if spec == "1(Ascend910-4c)":
        assert accel["visible_env"] == "ASCEND_RT_VISIBLE_DEVICES"


async def test_a_model_is_required_by_node_affinity_next_to_the_configured_terms():
    admin_term = {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}
    sp = make_spawner(node_affinity_required=[admin_term])
    pod = await pod_for(sp, request_for("2(A100-80G)"))
    assert container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    (term,) = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    by_key = {e["key"]: e for e in term["matchExpressions"]}
    assert by_key["pool"]["values"] == ["gpu"]
    assert "NVIDIA-A100-SXM4-80GB" in by_key["nvidia.com/gpu.product"]["values"]


@pytest.mark.parametrize("spec, profile, message", [
    ("0.5", "volcano", "needs a memory size"),
    ("1(Ascend910-4c)", "volcano", "volcano profile cannot express"),
])
async def test_accelerators_the_cluster_cannot_express_are_a_400(spec, profile, message):
    sp = make_spawner(accelerator_profile=profile)
    sp.workload = request_for(spec)
    with pytest.raises(web.HTTPError) as e:
        await sp.load_user_options()
    assert e.value.status_code == 400 and message in e.value.jupyterhub_message



async def test_the_chosen_image_is_the_pods_image_from_the_registry():
    from gemhub.spawner.request import ImageChoice

    sp = make_spawner()
    pushed = ImageChoice(id=4, version=2, version_id=9, name="tools", workspace_id=3,
                         reference="127.0.0.1:5000/gemhub/img-4:v2", env=("TOOL_HOME=/opt/tool", "PATH=/x"))
    pod = await pod_for(sp, request_for(image=pushed))
    assert container(pod)["image"] == "127.0.0.1:5000/gemhub/img-4:v2"
    assert pod["metadata"]["annotations"]["gemhub.io/image"] == "tools:v2"
    env = env_of(pod)
    assert env["TOOL_HOME"] == "/opt/tool" and env["GEMHUB_IMAGE"] == "tools:v2"
    # without an image (the host fallback) the configured kubernetes.image runs, also on a later start
    pod = await pod_for(sp, request_for())
    assert container(pod)["image"] == "gemhub/notebook:1"


async def test_an_image_not_in_a_registry_is_a_400():
    from gemhub.spawner.request import ImageChoice

    sp = make_spawner()
    sp.workload = request_for(image=ImageChoice(id=4, version=2, version_id=9, name="tools"))
    with pytest.raises(web.HTTPError) as e:
        sp.plan()
    assert e.value.status_code == 400 and "not in a registry" in e.value.jupyterhub_message
