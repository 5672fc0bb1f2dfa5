"""The pure allocator: exclusivity, sharing without oversubscription, MIG/vNPU slices,
policies and typed no-capacity reasons (property-tested with hypothesis)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemhub.spawner.accelerators import (
    Allocation, Capacity, NoCapacityError, SimulatedInventory, allocate, default_registry, parse,
)

REG = default_registry()


def inventory(*entries):
    return SimulatedInventory.from_config(list(entries)).devices()


def reason(devices, allocations, spec, policy="binpack"):
    with pytest.raises(NoCapacityError) as info:
        allocate(devices, allocations, parse(spec), "x", policy)
    return info.value.no_capacity.reason


def test_whole_devices_are_exclusive():
    devs = inventory({"model": "A100-80G", "count": 2})
    a = allocate(devs, [], parse("1"), "a")
    b = allocate(devs, [a], parse("1"), "b")
    assert set(a.device_ids).isdisjoint(b.device_ids)
    assert reason(devs, [a, b], "1") == "insufficient_devices"
    assert reason(devs, [a, b], "0.1") == "insufficient_memory"


def test_fractions_share_without_oversubscribing():
    devs = inventory({"model": "A100-80G", "count": 1})
    allocs = [allocate(devs, [], parse("0.5"), "a")]
    allocs.append(allocate(devs, allocs, parse("0.25"), "b"))
    allocs.append(allocate(devs, allocs, parse("0.25"), "c"))
    assert {a.device_ids for a in allocs} == {("local/0",)}
    assert sum(a.memory_mib for a in allocs) == 81920
    assert reason(devs, allocs, "0.1") == "insufficient_memory"
    assert reason(devs, allocs, "1") == "insufficient_devices"


def test_compute_is_not_oversubscribed():
    devs = inventory({"model": "A100-80G", "count": 1})
    a = allocate(devs, [], parse("1(vgpu,1G,90%)"), "a")
    assert (a.memory_mib, a.compute_percent, a.exclusive) == (1024, 90, False)
    assert reason(devs, [a], "1(vgpu,1G,20%)") == "insufficient_compute"
    assert allocate(devs, [a], parse("1(vgpu,1G,10%)"), "b").device_ids == ("local/0",)


def test_memory_and_compute_defaults_follow_the_fraction():
    devs = inventory({"model": "V100-32G", "count": 1})
    a = allocate(devs, [], parse("8G,0.5"), "a")
    assert (a.memory_mib, a.compute_percent) == (8192, 50)
    b = allocate(devs, [a], parse("1(vgpu,8G)"), "b")
    assert (b.memory_mib, b.compute_percent) == (8192, 25)


def test_mig_profiles_count_slices_and_need_mig_capable_models():
    devs = inventory({"model": "A100-80G", "count": 1}, {"model": "V100-32G", "count": 1, "node": "v"})
    allocs = []
    for i in range(7):
        allocs.append(allocate(devs, allocs, parse("1(mig-1g.10gb)"), f"m{i}"))
    assert all(a.device_ids == ("local/0",) and a.mig_profile == "1g.10gb" for a in allocs)
    assert reason(devs, allocs, "1(mig-1g.10gb)") == "no_free_slices"
    assert reason(devs[1:], [], "1(mig-1g.10gb)") == "not_mig_capable"
    # A device in MIG mode takes no whole or fractional work, and vice versa.
    one = [allocs[0]]
    assert reason(devs[:1], one, "0.1") == "device_partitioned"
    assert reason(devs[:1], [allocate(devs[:1], [], parse("0.5"), "f")], "1(mig-1g.10gb)") == "no_free_slices"


def test_mig_memory_slices_limit_too():
    devs = inventory({"model": "A100-80G", "count": 1})
    allocs = [allocate(devs, [], parse("1(mig-4g.40gb)"), "a")]
    allocs.append(allocate(devs, allocs, parse("1(mig-3g.40gb)"), "b"))
    assert reason(devs, allocs, "1(mig-1g.10gb)") == "no_free_slices"  # 8 of 8 memory slices


def test_vnpu_templates_take_aicores():
    devs = inventory({"model": "910", "count": 1, "node": "npu"})
    allocs = []
    for n, spec in enumerate(["1(Ascend910-16c)", "1(Ascend910-8c)", "1(Ascend910-4c)", "1(Ascend910-2c)"]):
        allocs.append(allocate(devs, allocs, parse(spec), f"h{n}"))
    assert allocs[1].vnpu_template == "Ascend910-8c" and allocs[1].compute_percent == 27  # 8 of 30 AI cores
    assert reason(devs, allocs, "1(Ascend910-2c)") == "no_free_slices"
    assert reason(devs, allocs, "0.1") == "device_partitioned"


def test_model_and_vendor_constraints():
    devs = inventory({"model": "A100-80G", "count": 2}, {"model": "RTX4090", "count": 2, "node": "g"},
                     {"model": "910B", "count": 2, "node": "npu"})
    assert allocate(devs, [], parse("2(RTX4090)"), "a").device_ids == ("g/0", "g/1")
    assert allocate(devs, [], parse("1(npu)"), "a").device_ids[0].startswith("npu/")
    assert allocate(devs, [], parse("1(A100)"), "a").device_ids[0].startswith("local/")
    assert reason(devs, [], "1(V100)") == "no_such_model"
    assert reason(devs, [], "3(A100-80G)") == "insufficient_devices"


def test_multi_device_requests_stay_on_one_node():
    devs = inventory({"model": "A100-80G", "count": 4, "node": "a"}, {"model": "A100-80G", "count": 4, "node": "b"})
    a = allocate(devs, [], parse("2"), "a")
    b = allocate(devs, [a], parse("4"), "b")
    assert {d.split("/")[0] for d in b.device_ids} == {"b"}
    with pytest.raises(NoCapacityError, match="do not fit on one node"):
        allocate(devs, [], parse("5"), "c")


def test_devices_out_of_service_are_skipped():
    devs = inventory({"model": "A100-80G", "count": 1, "status": "maintenance"},
                     {"model": "A100-80G", "count": 1, "node": "n2"})
    assert allocate(devs, [], parse("1"), "a").device_ids == ("n2/0",)
    assert reason(devs[:1], [], "1") == "all_in_maintenance"
    faulty = inventory({"model": "A100-80G", "count": 1, "status": "fault"})
    assert reason(faulty, [], "0.5") == "devices_unavailable"


def test_binpack_fills_the_fullest_node_spread_the_emptiest():
    devs = inventory({"model": "A100-80G", "count": 2, "node": "a"}, {"model": "A100-80G", "count": 2, "node": "b"})
    first = allocate(devs, [], parse("0.5"), "first")
    node_of = lambda alloc: alloc.device_ids[0].split("/")[0]  # noqa: E731
    packed = allocate(devs, [first], parse("0.25"), "p", "binpack")
    assert packed.device_ids == first.device_ids  # fullest node, fullest device
    spread = allocate(devs, [first], parse("0.25"), "s", "spread")
    assert node_of(spread) != node_of(first)


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown allocation policy"):
        allocate(inventory({"model": "T4"}), [], parse("1"), "a", "random")


def test_allocation_json_round_trip():
    a = Allocation("server:alice/", ("local/0",), 40960, 50, None, False)
    assert Allocation.from_json(a.to_json()) == a


# -- properties -----------------------------------------------------------------------------
DEVICES = inventory({"model": "A100-80G", "count": 3, "node": "a"}, {"model": "A100-40G", "count": 2, "node": "b"},
                    {"model": "V100-32G", "count": 2, "node": "c"}, {"model": "910", "count": 1, "node": "n"})
SPECS = ["1", "2", "4", "0.25", "0.5", "0.75", "1(vgpu,10G,30%)", "1(mig-1g.10gb)", "1(mig-3g.40gb)",
         "1(mig-2g.10gb)", "1(V100)", "0.5(A100)", "1(Ascend910-4c)", "1(Ascend910-16c)", "1(npu)"]
OPS = st.lists(st.tuples(st.sampled_from(SPECS), st.sampled_from(["binpack", "spread"]), st.integers(0, 30)),
               max_size=60)


def check_invariants(allocs):
    by_device: dict[str, list[Allocation]] = {}
    for a in allocs:
        for d in a.device_ids:
            by_device.setdefault(d, []).append(a)
    mem = {d.id: d.memory_mib for d in DEVICES}
    for dev, held in by_device.items():
        if any(a.exclusive for a in held):
            assert len(held) == 1, f"whole device {dev} shared: {held}"
        elif any(a.mig_profile for a in held):
            assert all(a.mig_profile for a in held)
            info = REG.model(next(d.model for d in DEVICES if d.id == dev))[1]
            assert sum(info.mig_profiles[a.mig_profile].compute_slices for a in held) <= info.mig_compute_slices
            assert sum(info.mig_profiles[a.mig_profile].memory_slices for a in held) <= info.mig_memory_slices
        else:
            assert sum(a.memory_mib for a in held) <= mem[dev], f"memory oversubscribed on {dev}"
            assert sum(a.compute_percent for a in held) <= 100, f"compute oversubscribed on {dev}"


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_invariants_hold_under_arrivals_and_departures(ops):
    allocs: list[Allocation] = []
    for n, (spec, policy, release) in enumerate(ops):
        if allocs and release % 3 == 0:
            allocs.pop(release % len(allocs))
            continue
        try:
            allocs.append(allocate(DEVICES, allocs, parse(spec), f"h{n}", policy))
        except NoCapacityError as e:
            assert e.no_capacity.reason in {"insufficient_devices", "insufficient_memory", "device_partitioned",
                                            "insufficient_compute", "no_free_slices"}
        check_invariants(allocs)


@settings(max_examples=100, deadline=None)
@given(OPS)
def test_release_restores_capacity(ops):
    allocs: list[Allocation] = []
    for n, (spec, policy, _) in enumerate(ops):
        try:
            allocs.append(allocate(DEVICES, allocs, parse(spec), f"h{n}", policy))
        except NoCapacityError:
            pass
    incremental = Capacity(DEVICES, allocs)
    for a in allocs:
        incremental.remove(a)
    fresh = Capacity(DEVICES, [])
    for did, u in incremental.usage.items():
        f = fresh.usage[did]
        assert (u.mode, u.memory, u.compute, u.slices_c, u.slices_m) == (f.mode, 0, 0, 0, 0)
        assert u.util == pytest.approx(0)
    # After every release the largest request fits again.
    assert allocate(DEVICES, [], parse("3(A100-80G)"), "big").device_ids


def test_incremental_index_matches_a_rebuild():
    cap = Capacity(DEVICES)
    allocs = []
    for n, spec in enumerate(SPECS * 2):
        try:
            allocs.append(cap.place(parse(spec), f"h{n}"))
        except NoCapacityError:
            pass
    rebuilt = Capacity(DEVICES, allocs)
    for name, node in cap.nodes.items():
        actually_free = sum(1 for u in cap.usage.values() if u.node is node and u.mode is None)
        assert node.free == rebuilt.nodes[name].free == actually_free
        assert node.util == pytest.approx(rebuilt.nodes[name].util)
    for did in cap.usage:
        a, b = cap.usage[did], rebuilt.usage[did]
        assert (a.mode, a.memory, a.compute, a.slices_c, a.slices_m) == (b.mode, b.memory, b.compute, b.slices_c, b.slices_m)


def test_binpack_best_fits_whole_devices_and_keeps_nodes_empty():
    devs = inventory({"model": "A100-80G", "count": 4, "node": "a"}, {"model": "A100-80G", "count": 4, "node": "b"})
    allocs = [allocate(devs, [], parse("3"), "three")]           # a: 1 free, b: 4 free
    one = allocate(devs, allocs, parse("1"), "one", "binpack")
    assert one.device_ids[0].startswith(allocs[0].device_ids[0].split("/")[0])  # fills the 1-free node
    allocs.append(one)
    assert {d.split("/")[0] for d in allocate(devs, allocs, parse("4"), "four").device_ids} == {"b"}
    spread = allocate(devs, allocs[:1], parse("1"), "s", "spread")
    assert spread.device_ids[0].split("/")[0] != allocs[0].device_ids[0].split("/")[0]


def test_binpack_shares_an_already_shared_device_before_breaking_a_free_one():
    devs = inventory({"model": "A100-80G", "count": 2, "node": "a"}, {"model": "A100-80G", "count": 1, "node": "b"})
    first = allocate(devs, [], parse("0.25(A100)"), "f", "spread")
    second = allocate(devs, [first], parse("0.5"), "s", "binpack")
    assert second.device_ids == first.device_ids
