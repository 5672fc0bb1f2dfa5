"""The vendor registry: shipped data, lookups, units and validated overrides."""

import pytest

from gemhub.spawner.accelerators import RegistryError, default_registry, parse

REG = default_registry()


def test_every_vendor_of_the_issue_is_covered():
    assert {"nvidia", "ascend", "cambricon", "hygon", "metax", "iluvatar", "kunlunxin",
            "enflame", "mthreads", "amd"} <= set(REG.vendors)


def test_nvidia_resources_and_annotations():
    nv = REG.vendor("gpu")
    assert nv.whole_resource == "nvidia.com/gpu"
    assert nv.shared_resource == "nvidia.com/gpu.shared"
    assert nv.mig_resource_prefix == "nvidia.com/mig-"
    hami = nv.profiles["hami"]
    assert (hami.count, hami.memory, hami.memory_unit_mib, hami.compute) == (
        "nvidia.com/gpu", "nvidia.com/gpumem", 1, "nvidia.com/gpucores")
    assert nv.annotations == {"use_type": "nvidia.com/use-gputype", "use_uuid": "nvidia.com/use-gpuuuid"}
    assert nv.profiles["volcano"].count == "volcano.sh/vgpu-number"
    assert nv.visible_env == ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")


@pytest.mark.parametrize("vendor, memory, unit, compute", [
    ("cambricon", "cambricon.com/mlu.smlu.vmemory", 256, "cambricon.com/mlu.smlu.vcore"),
    ("hygon", "hygon.com/dcumem", 1, "hygon.com/dcucores"),
    ("metax", "metax-tech.com/vmemory", 1024, "metax-tech.com/vcore"),
    ("iluvatar", "iluvatar.ai/vcuda-memory", 256, "iluvatar.ai/vcuda-core"),
    ("kunlunxin", "kunlunxin.com/vxpu-memory", 1, None),
    ("mthreads", "mthreads.com/sgpu-memory", 512, None),
])
def test_fractional_units(vendor, memory, unit, compute):
    res = REG.vendor(vendor).profiles["hami"]
    assert (res.memory, res.memory_unit_mib, res.compute) == (memory, unit, compute)


def test_ascend_resources_are_per_chip():
    ascend = REG.vendor("npu")
    assert ascend.whole_resource_for("910B") == "huawei.com/Ascend910"
    assert ascend.whole_resource_for("310P") == "huawei.com/Ascend310P"
    assert ascend.fractional_for("hami", "910B").memory == "huawei.com/Ascend910B-memory"
    assert ascend.fractional_for("hami", "910").count == "huawei.com/Ascend910A"
    t = REG.template("ascend910-8c")
    assert (t.name, t.model, t.aicore) == ("Ascend910-8c", "910", 8)


def test_mig_profiles_and_families():
    _, a100 = REG.model("A100-80G")
    assert a100.mig_capable and a100.mig_compute_slices == 7 and a100.mig_memory_slices == 8
    assert a100.mig_profiles["3g.40gb"].compute_slices == 3
    assert not REG.model("V100-32G")[1].mig_capable
    assert REG.members("A100") == ("A100-40G", "A100-80G")
    assert REG.model("a30")[1].mig_profiles["1g.6gb"].memory_slices == 1


@pytest.mark.parametrize("product, model", [
    ("NVIDIA A100-SXM4-80GB", "A100-80G"),
    ("NVIDIA A100 80GB PCIe", "A100-80G"),
    ("Tesla V100-SXM2-32GB", "V100-32G"),
    ("NVIDIA GeForce RTX 4090", "RTX4090"),
    ("NVIDIA H100 80GB HBM3", "H100-80G"),
])
def test_product_names_map_to_models(product, model):
    assert REG.model_for_product(product)[1].name == model
    assert REG.model_for_product("Some Unknown Board") is None


def test_overrides_merge_and_extend():
    reg = REG.with_overrides({
        "nvidia": {"models": {"RTX6000": {"memory_mib": 49152, "product_names": ["NVIDIA RTX 6000 Ada Generation"]}},
                   "shared_resource": "nvidia.com/gpu.timeshared"},
        "biren": {"display": "Biren", "aliases": ["br"], "whole_resource": "birentech.com/gpu",
                  "visible_env": ["BR_VISIBLE_DEVICES"], "models": {"BR100": {"memory_mib": 65536}}},
    })
    assert reg.vendor("nvidia").shared_resource == "nvidia.com/gpu.timeshared"
    assert reg.model("A100-80G")[1].memory_mib == 81920  # untouched data survives the merge
    assert parse("1(br,BR100)", registry=reg).vendor == "biren"
    assert parse("2(RTX6000)", registry=reg).model == "RTX6000"
    assert REG.find_model("RTX6000") is None  # the shipped registry is not mutated


@pytest.mark.parametrize("override, key", [
    ({"nvidia": {"models": {"A100-80G": {"memory_mib": -5}}}}, "accelerators.vendors.nvidia.models.A100-80G.memory_mib"),
    ({"nvidia": {"whole_resouce": "x"}}, "accelerators.vendors.nvidia.whole_resouce"),
    ({"nvidia": {"profiles": {"hami": {"count": 5}}}}, "accelerators.vendors.nvidia.profiles.hami.count"),
    ({"nvidia": "yes"}, "accelerators.vendors.nvidia"),
    ({"x": {"whole_resource": "x.com/x", "visible_env": []}}, "accelerators.vendors.x.visible_env"),
    ({"nvidia": {"models": {"A30": {"mig": {"profiles": {"9g.99gb": {"compute": 9, "memory": 1, "memory_mib": 10}}}}}}},
     "accelerators.vendors.nvidia.models.A30.mig.profiles.9g.99gb"),
])
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(RegistryError) as info:
        REG.with_overrides(override)
    assert key in str(info.value)
