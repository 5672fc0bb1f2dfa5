"""What runtimes get: local environment variables and Kubernetes resources per profile."""

import json

import pytest

from gemhub.spawner.accelerators import (
    Allocation, Device, DeviceStatus, RenderError, SimulatedInventory, allocate, format, kubernetes_resources,
    local_env, parse,
)

SIM = SimulatedInventory.from_config([{"model": "A100-80G", "count": 2},
                                      {"model": "910B", "count": 2, "node": "npu"}]).devices()
REAL = [Device("local/GPU-aaaa", "local", 0, "GPU-aaaa", "nvidia", "A100-80G", 81920, True,
               DeviceStatus.ONLINE, False),
        Device("local/GPU-bbbb", "local", 1, "GPU-bbbb", "nvidia", "A100-80G", 81920, True,
               DeviceStatus.ONLINE, False)]


def test_no_accelerator_hides_every_device():
    env = local_env(parse("0"), None, SIM)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "none"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["ASCEND_RT_VISIBLE_DEVICES"] == ""
    info = json.loads(env["GEMHUB_ACCELERATOR"])
    assert info["devices"] == [] and info["kind"] == "none" and info["spec"] == "0"


def test_whole_real_devices_are_named_by_uuid():
    req = parse("2(A100-80G)")
    alloc = allocate(REAL, [], req, "a")
    env = local_env(req, alloc, REAL)
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "GPU-aaaa,GPU-bbbb"
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in env
    info = json.loads(env["GEMHUB_ACCELERATOR"])
    assert info["simulated"] is False and info["visible_env"] == "CUDA_VISIBLE_DEVICES"
    assert [d["uuid"] for d in info["devices"]] == ["GPU-aaaa", "GPU-bbbb"]


def test_fraction_gets_mps_limits_and_the_pipe_directory():
    req = parse("0.25(A100-80G)")
    alloc = allocate(SIM, [], req, "a")
    env = local_env(req, alloc, SIM, mps_pipe_dir="/run/gemhub/mps/local-0")
    assert env["CUDA_VISIBLE_DEVICES"] == "0"  # simulated devices by index
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/run/gemhub/mps/local-0"
    info = json.loads(env["GEMHUB_ACCELERATOR"])
    assert info["simulated"] is True and info["enforcement"] == "mps"
    assert info["devices"] == [{"id": "local/0", "index": 0, "uuid": "SIM-NVIDIA-local-00", "model": "A100-80G",
                                "memory_limit_mib": 20480, "memory_total_mib": 81920, "compute_percent": 25,
                                "mig_profile": None, "vnpu_template": None}]


def test_other_vendors_use_their_own_variable():
    req = parse("2(npu,910B)")
    env = local_env(req, allocate(SIM, [], req, "a"), SIM)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1"
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert json.loads(env["GEMHUB_ACCELERATOR"])["visible_env"] == "ASCEND_RT_VISIBLE_DEVICES"


def test_allocation_on_a_vanished_device_is_refused():
    with pytest.raises(RenderError, match="not in the inventory"):
        local_env(parse("1"), Allocation("a", ("gone/0",), 1, 100), SIM)


@pytest.mark.parametrize("spec, profile, limits, annotations", [
    ("2(V100)", "native", {"nvidia.com/gpu": "2"}, {}),
    ("1(mig-1g.10gb)", "native", {"nvidia.com/mig-1g.10gb": "1"}, {}),
    ("1(Ascend910-4c)", "native", {"huawei.com/Ascend910-4c": "1"}, {}),
    ("8(Ascend910B)", "native", {"huawei.com/Ascend910": "8"}, {}),
    ("1(310P)", "native", {"huawei.com/Ascend310P": "1"}, {}),
    ("2(mlu)", "native", {"cambricon.com/mlu": "2"}, {}),
    ("1(amd)", "native", {"amd.com/gpu": "1"}, {}),
    ("1(vgpu,10G,30%)", "hami", {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "10240", "nvidia.com/gpucores": "30"}, {}),
    ("0.5", "hami", {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50", "nvidia.com/gpucores": "50"}, {}),
    ("0.5(V100-32G)", "hami", {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50", "nvidia.com/gpucores": "50"},
     {"nvidia.com/use-gputype": "Tesla V100-SXM2-32GB,Tesla V100-PCIE-32GB,Tesla V100S-PCIE-32GB"}),
    ("0.5(910B)", "hami", {"huawei.com/Ascend910B": "1", "huawei.com/Ascend910B-memory": "32768"}, {}),
    ("1(vgpu,dcu,2000M,60%)", "hami", {"hygon.com/dcunum": "1", "hygon.com/dcumem": "2000", "hygon.com/dcucores": "60"}, {}),
    ("1(vgpu,iluvatar,16G,50%)", "hami", {"iluvatar.ai/vgpu": "1", "iluvatar.ai/vcuda-memory": "64", "iluvatar.ai/vcuda-core": "50"}, {}),
    ("1(vgpu,metax,4G,60%)", "hami", {"metax-tech.com/sgpu": "1", "metax-tech.com/vmemory": "4", "metax-tech.com/vcore": "60"}, {}),
    ("1(vgpu,mlu,10G)", "hami", {"cambricon.com/vmlu": "1", "cambricon.com/mlu.smlu.vmemory": "40"}, {}),
    ("1(vgpu,mthreads,16G)", "hami", {"mthreads.com/vgpu": "1", "mthreads.com/sgpu-memory": "32"}, {}),
    ("1(vgpu,xpu,24G)", "hami", {"kunlunxin.com/vxpu": "1", "kunlunxin.com/vxpu-memory": "24576"}, {}),
    ("1(Ascend910-4c)", "hami", {"huawei.com/Ascend910A": "1", "huawei.com/Ascend910A-memory": "4369"}, {}),
    ("1(vgpu,10G,30%)", "volcano", {"volcano.sh/vgpu-number": "1", "volcano.sh/vgpu-memory": "10240", "volcano.sh/vgpu-cores": "30"}, {}),
    ("2", "volcano", {"volcano.sh/vgpu-number": "2"}, {}),
])
def test_kubernetes_resources(spec, profile, limits, annotations):
    r = kubernetes_resources(parse(spec), profile=profile)
    assert r.limits == limits
    for k, v in annotations.items():
        assert r.annotations[k] == v
    assert json.loads(r.env["GEMHUB_ACCELERATOR"])["spec"] == format(parse(spec))


def test_native_fraction_is_time_slicing_and_says_it_is_not_isolated():
    r = kubernetes_resources(parse("0.5(A100-80G)"), profile="native")
    assert r.limits == {"nvidia.com/gpu.shared": "1"}
    assert "NOT isolated" in r.annotations["gemhub.io/accelerator-sharing"]
    assert json.loads(r.env["GEMHUB_ACCELERATOR"])["enforcement"] == "time-slicing"


def test_model_selection_by_gpu_feature_discovery_labels():
    r = kubernetes_resources(parse("1(T4)"), profile="native")
    assert r.node_selector == {"nvidia.com/gpu.product": "Tesla-T4"}
    r = kubernetes_resources(parse("1(A100-80G)"), profile="native")
    assert r.node_selector == {}
    assert r.node_affinity == [{"key": "nvidia.com/gpu.product", "operator": "In",
                                "values": ["NVIDIA-A100-80GB-PCIe", "NVIDIA-A100-PCIE-80GB", "NVIDIA-A100-SXM4-80GB"]}]


def test_no_accelerator_on_kubernetes():
    r = kubernetes_resources(parse("0"), profile="hami")
    assert r.limits == {} and r.env["NVIDIA_VISIBLE_DEVICES"] == "none"


@pytest.mark.parametrize("spec, profile, fragment", [
    ("0.5(MLU370)", "native", "use the hami profile"),
    ("1(mig-1g.10gb)", "volcano", "cannot express a mig"),
    ("0.5(mlu)", "hami", "name a model"),
    ("1", "kueue", "unknown Kubernetes profile"),
])
def test_inexpressible_requests_raise(spec, profile, fragment):
    with pytest.raises(RenderError, match=fragment):
        kubernetes_resources(parse(spec), profile=profile)
