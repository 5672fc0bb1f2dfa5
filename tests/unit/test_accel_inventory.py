"""Inventories: simulated from config, NVML (through a pynvml-shaped fake), Kubernetes
nodes (parsing, and one HTTP round trip through kubernetes_asyncio to a fake API server)."""

import json

import pytest
from aiohttp import web

from gemhub.spawner.accelerators import DeviceStatus, InventoryError, KubernetesInventory, NvmlInventory, SimulatedInventory
from gemhub.spawner.accelerators.inventory import devices_from_nodes

from accel_fakes import FakeNvml, two_boards


def test_simulated_from_config():
    devs = SimulatedInventory.from_config([
        {"model": "A100-80G", "count": 2},
        {"model": "RTX4090", "count": 4, "node": "dev-b"},
        {"model": "Ascend910B", "count": 8, "node": "npu-a", "status": "maintenance"},
        {"model": "A100-80G", "count": 1},
    ]).devices()
    assert len(devs) == 15
    assert [d.id for d in devs if d.node == "local"] == ["local/0", "local/1", "local/2"]
    a100 = devs[0]
    assert (a100.vendor, a100.model, a100.memory_mib, a100.mig_capable, a100.simulated) == (
        "nvidia", "A100-80G", 81920, True, True)
    assert not devs[2].mig_capable  # 4090
    npu = [d for d in devs if d.node == "npu-a"]
    assert {d.model for d in npu} == {"910B"} and {d.status for d in npu} == {DeviceStatus.MAINTENANCE}
    assert len({d.uuid for d in devs}) == 15


def test_simulated_model_outside_the_registry():
    dev = SimulatedInventory.from_config([{"model": "BR100", "vendor": "nvidia", "memory_mib": 65536}]).devices()[0]
    assert (dev.model, dev.memory_mib) == ("BR100", 65536)


@pytest.mark.parametrize("entries, fragment", [
    ({"model": "A100-80G"}, "must be a list"),
    ([{"model": "A100-80G", "count": 0}], "simulated[0].count"),
    ([{"model": "A100-80G", "count": True}], "simulated[0].count"),
    ([{"model": "A100"}], "is a family"),
    ([{"model": "Z9000"}], "not in the registry"),
    ([{"model": "T4", "status": "broken"}], "simulated[0].status"),
    ([{"model": "T4", "node": "a/b"}], "simulated[0].node"),
    ([{"model": "T4", "colour": "red"}], "simulated[0].colour"),
    (["T4"], "simulated[0]"),
])
def test_simulated_config_errors(entries, fragment):
    with pytest.raises(InventoryError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        SimulatedInventory.from_config(entries)


def test_nvml_inventory_maps_products_and_mig_mode():
    fake = two_boards()
    inv = NvmlInventory(nvml=fake)
    assert fake.initialised == 0  # constructing touches nothing
    a100, rtx = inv.devices()
    assert fake.initialised == 0  # shut down again
    assert (a100.id, a100.model, a100.memory_mib, a100.mig_capable, a100.mig_enabled, a100.simulated) == (
        "local/GPU-1111", "A100-80G", 81920, True, False, False)
    assert (rtx.uuid, rtx.model, rtx.mig_capable, rtx.status) == ("GPU-2222", "RTX4090", False, DeviceStatus.ONLINE)


def test_nvml_unknown_product_lost_device_and_mig_enabled():
    fake = FakeNvml([
        {"name": "NVIDIA Future GPU 9000", "uuid": "GPU-9", "total_mib": 1000, "used_mib": 0, "mig": 1},
        {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-8", "total_mib": 0, "used_mib": 0, "broken": True},
    ])
    future, lost = NvmlInventory(nvml=fake).devices()
    assert (future.model, future.mig_enabled) == ("Future-GPU-9000", True)
    assert (lost.model, lost.status, lost.memory_mib) == ("H100-80G", DeviceStatus.FAULT, 81920)


def test_nvml_missing_driver_is_an_inventory_error():
    class NoDriver(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("NVML_ERROR_LIBRARY_NOT_FOUND")

    with pytest.raises(InventoryError, match="NVML is not available"):
        NvmlInventory(nvml=NoDriver([])).devices()


def node(name, allocatable, labels=None, ready="True", unschedulable=False):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": "64", "memory": "512Gi", **allocatable},
                       "conditions": [{"type": "Ready", "status": ready}]}}


NODES = [
    node("gpu-a", {"nvidia.com/gpu": "8"}, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                                            "nvidia.com/gpu.memory": "81920"}),
    node("gpu-b", {"nvidia.com/gpu": "2"}, {"nvidia.com/gpu.product": "Tesla-V100-SXM2-32GB"}, ready="False"),
    node("npu-a", {"huawei.com/Ascend910": "8", "huawei.com/Ascend310P": "2"}, {"accelerator": "huawei-Ascend910"},
         unschedulable=True),
    node("cpu-only", {}),
    node("odd", {"nvidia.com/gpu": "4"}, {"nvidia.com/gpu.product": "NVIDIA-Mystery", "nvidia.com/gpu.memory": "1234"}),
]


def test_devices_from_node_list():
    devs = devices_from_nodes(NODES)
    by_node = {}
    for d in devs:
        by_node.setdefault(d.node, []).append(d)
    assert set(by_node) == {"gpu-a", "gpu-b", "npu-a", "odd"}
    a = by_node["gpu-a"]
    assert len(a) == 8 and {(d.model, d.memory_mib, d.mig_capable, d.status) for d in a} == {
        ("A100-80G", 81920, True, DeviceStatus.ONLINE)}
    assert {d.status for d in by_node["gpu-b"]} == {DeviceStatus.OFFLINE}
    assert by_node["gpu-b"][0].model == "V100-32G"
    npu = by_node["npu-a"]
    assert sorted(d.model for d in npu) == ["310P"] * 2 + ["910"] * 8
    assert {d.status for d in npu} == {DeviceStatus.MAINTENANCE}
    assert {(d.model, d.memory_mib) for d in by_node["odd"]} == {("NVIDIA-Mystery", 1234)}
    assert by_node["gpu-a"][3].id == "gpu-a/nvidia.com/gpu/3"


async def test_kubernetes_inventory_over_http():
    from kubernetes_asyncio import client

    seen = []

    async def list_nodes(request):
        seen.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": NODES[:2]})

    app = web.Application()
    app.router.add_get("/api/v1/nodes", list_nodes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        def factory():
            conf = client.Configuration(host=f"http://127.0.0.1:{port}")
            conf.api_key = {"BearerToken": "test-token"}
            conf.api_key_prefix = {"BearerToken": "Bearer"}
            return client.ApiClient(conf)

        devs = await KubernetesInventory(api_client_factory=factory).devices()
    finally:
        await runner.cleanup()
    assert seen == [("/api/v1/nodes", "Bearer test-token")]
    assert len(devs) == 10 and devs[0].model == "A100-80G" and devs[-1].status is DeviceStatus.OFFLINE
    assert json.dumps(devs[0].to_json())


def test_build_inventory_modes():
    from gemhub.spawner.accelerators import NoInventory, build_inventory

    sim = [{"model": "A100-80G", "count": 2}]
    assert isinstance(build_inventory("none"), NoInventory)
    assert len(build_inventory("simulated", sim).devices()) == 2
    assert build_inventory("nvml", nvml=two_boards()).devices()[0].uuid == "GPU-1111"
    # auto: real devices when NVML answers, else the simulated fallback.
    assert build_inventory("auto", sim, nvml=two_boards()).devices()[0].simulated is False

    class NoDriver(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("NVML_ERROR_LIBRARY_NOT_FOUND")

    auto = build_inventory("auto", sim, nvml=NoDriver([]))
    assert [d.simulated for d in auto.devices()] == [True, True]
    assert build_inventory("auto", None, nvml=NoDriver([])).devices() == []
    with pytest.raises(InventoryError, match="accelerators.inventory"):
        build_inventory("gpu")
