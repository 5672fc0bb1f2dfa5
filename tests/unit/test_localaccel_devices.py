"""The local runtime's device adapter: inventory choice, allocation under one lock,
maintenance marks, environment and MPS, the admin view, and the spawner's state."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
import types

import pytest

from gemhub.spawner.accelerators import parse
from gemhub.spawner.accelerators.allocator import NoCapacityError
from gemhub.spawner.accelerators.inventory import DeviceStatus, SimulatedInventory
from gemhub.spawner.local.devices import (
    AcceleratorConfigError,
    HubProcessStore,
    LocalDevices,
    check_config,
    hub_devices,
    server_holder,
)

SIM = [{"node": "local", "model": "A100-80G", "count": 1},
       {"node": "local", "model": "RTX4090", "count": 2},
       {"node": "edge", "model": "910B", "count": 1}]
CONFIG = {"inventory": "simulated", "simulated": SIM, "policy": "binpack"}


@pytest.fixture
def devs(tmp_path):
    return LocalDevices(CONFIG, str(tmp_path))


class FakeNvml:
    """Stands in for NVML (no GPU here): the same interface as NvmlInventory."""

    def __init__(self, registry=None, devices=(), error=None):
        self._devices, self._error = list(devices), error

    def devices(self):
        if self._error:
            raise self._error
        return list(self._devices)


def real_devices():
    sim = SimulatedInventory.from_config([{"model": "A100-80G", "count": 1}]).devices()
    return [dataclasses.replace(d, simulated=False, uuid="GPU-1234") for d in sim]


@pytest.mark.parametrize("mode,nvml,source", [
    ("auto", FakeNvml(), "simulated"),
    ("auto", FakeNvml(error=RuntimeError("no libnvidia-ml")), "simulated"),
    ("auto", FakeNvml(devices=real_devices()), "nvml"),
    ("simulated", FakeNvml(devices=real_devices()), "simulated"),
    ("none", FakeNvml(devices=real_devices()), "none"),
])
def test_inventory_choice(tmp_path, mode, nvml, source):
    d = LocalDevices({**CONFIG, "inventory": mode}, str(tmp_path), nvml_inventory=lambda registry: nvml)
    d.devices()
    assert d.source == source


def test_auto_without_devices_or_simulated_list_is_none_and_nvml_failure_is_an_error(tmp_path):
    d = LocalDevices({"inventory": "auto", "simulated": []}, str(tmp_path),
                     nvml_inventory=lambda registry: FakeNvml())
    assert d.devices() == [] and d.source == "none"
    d = LocalDevices({"inventory": "nvml"}, str(tmp_path),
                     nvml_inventory=lambda registry: FakeNvml(error=RuntimeError("no driver")))
    with pytest.raises(AcceleratorConfigError, match="no driver"):
        d.devices()


def test_check_config_reports_bad_simulated_entries_and_vendor_overrides():
    check_config(CONFIG)
    with pytest.raises(AcceleratorConfigError, match="simulated"):
        check_config({"simulated": [{"model": "A100-80G", "count": 0}]})
    with pytest.raises(AcceleratorConfigError, match="vendors"):
        check_config({"vendors": {"nvidia": {"models": {"X": {"memory_mib": "lots"}}}}})


async def test_whole_fraction_release_and_idempotence(devs):
    whole = await devs.allocate(parse("1(RTX4090)"), "server:a/")
    assert whole.exclusive and len(whole.device_ids) == 1
    assert await devs.allocate(parse("1(RTX4090)"), "server:a/") == whole  # same holder: same devices
    half = await devs.allocate(parse("0.5(A100-80G)"), "server:b/")
    assert half.device_ids == ("local/0",) and not half.exclusive and half.memory_mib == 40960
    assert await devs.allocate(parse("0"), "server:c/") is None
    assert {h for hs in (await devs.holders()).values() for h in hs} == {"server:a/", "server:b/"}
    await devs.release("server:a/")
    await devs.release("server:a/")  # idempotent
    assert "server:a/" not in {h for hs in (await devs.holders()).values() for h in hs}


async def test_concurrent_requests_never_share_a_whole_device(tmp_path):
    d = LocalDevices({"inventory": "simulated", "simulated": [{"model": "RTX4090", "count": 1}]}, str(tmp_path))
    results = await asyncio.gather(*(d.allocate(parse("1(RTX4090)"), f"server:u{i}/") for i in range(5)),
                                   return_exceptions=True)
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, NoCapacityError)]
    assert len(won) == 1 and len(lost) == 4
    assert all(e.no_capacity.message for e in lost)


async def test_maintenance_is_persisted_and_blocks_new_allocations(devs, tmp_path):
    devs.set_maintenance(device="local/0", on=True)
    again = LocalDevices(CONFIG, str(tmp_path))  # e.g. after a hub restart
    status = {d.id: d.status for d in again.devices()}
    assert status["local/0"] == DeviceStatus.MAINTENANCE and status["local/1"] == DeviceStatus.ONLINE
    with pytest.raises(NoCapacityError):
        await again.allocate(parse("1(A100-80G)"), "server:a/")
    assert again.never_fits(parse("1(A100-80G)")) is None  # temporarily, not never
    again.set_maintenance(node="edge", on=True)
    assert {d.status for d in again.devices() if d.node == "edge"} == {DeviceStatus.MAINTENANCE}
    again.set_maintenance(device="local/0", on=False)
    assert (await again.allocate(parse("1(A100-80G)"), "server:a/")).device_ids == ("local/0",)
    with pytest.raises(KeyError):
        again.set_maintenance(device="local/99", on=True)
    with pytest.raises(KeyError):
        again.set_maintenance(node="nowhere", on=True)
    saved = json.loads((tmp_path / "devices" / "maintenance.json").read_text())
    assert saved == {"devices": [], "nodes": ["edge"]}


def test_describe_labels_simulated_devices_before_anything_else_read_the_inventory(tmp_path):
    fresh = LocalDevices(CONFIG, str(tmp_path))  # as on the first spawn page after a hub start
    assert fresh.describe(parse("1(A100-80G)")) == "1 × A100-80G (80 GiB each) · simulated"


def test_never_fits_and_describe(devs):
    assert "A100-80G" in devs.never_fits(parse("2(A100-80G)"))
    assert devs.never_fits(parse("1(910B)")) is None and devs.never_fits(parse("0")) is None
    assert devs.describe(parse("0")) == "no accelerator"
    assert devs.describe(parse("1(A100-80G)")) == "1 × A100-80G (80 GiB each) · simulated"
    assert devs.describe(parse("0.5(A100-80G)")) == "0.5 of one A100-80G (40 GiB memory cap) · simulated"
    assert "MIG 1g.10gb" in devs.describe(parse("1(mig-1g.10gb)"))


async def test_environment_for_none_whole_and_fraction(devs, caplog):
    env = devs.env(parse("0"), None)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "none"
    assert json.loads(env["GEMHUB_ACCELERATOR"])["devices"] == []
    a = await devs.allocate(parse("0.5(A100-80G)"), "server:a/")
    caplog.set_level("INFO")
    assert await devs.prepare_mps(a, "gem-a", 1000, 1000) is None
    assert "simulated device: no MPS daemon" in caplog.text
    env = devs.env(parse("0.5(A100-80G)"), a)
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40960M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50" and "CUDA_MPS_PIPE_DIRECTORY" not in env
    info = json.loads(env["GEMHUB_ACCELERATOR"])
    assert info["simulated"] is True and info["devices"][0]["memory_limit_mib"] == 40960


async def test_mps_daemon_started_once_per_real_device(tmp_path, monkeypatch):
    """On NVML devices a fraction starts nvidia-cuda-mps-control -d (a recording stand-in
    here: there is no GPU driver on this machine) with the device's UUID and a pipe dir."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "mps-calls"
    script = bindir / "nvidia-cuda-mps-control"
    script.write_text(f"#!/bin/sh\necho \"$* $CUDA_VISIBLE_DEVICES $CUDA_MPS_PIPE_DIRECTORY\" >> {record}\n"
                      "touch \"$CUDA_MPS_PIPE_DIRECTORY/control\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    d = LocalDevices({"inventory": "nvml"}, str(tmp_path / "state"),
                     nvml_inventory=lambda registry: FakeNvml(devices=real_devices()))
    for holder in ("server:a/", "server:b/"):  # one account, two servers: one daemon
        a = await d.allocate(parse("0.25(A100-80G)"), holder)
        got = await d.prepare_mps(a, "gem-a", 4242, 4243)
    pipe = tmp_path / "state" / "mps" / "local_0" / "gem-a" / "pipe"
    assert got == pipe and record.read_text().splitlines() == [f"-d GPU-1234 {pipe}"]
    for folder in (pipe, pipe.parent, pipe.parent / "log"):  # the account's alone
        st = folder.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4243, 0o700)
    env = d.env(parse("0.25(A100-80G)"), a, mps_pipe_dir="/run/nvidia-mps")
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/run/nvidia-mps" and env["CUDA_VISIBLE_DEVICES"] == "GPU-1234"
    whole = LocalDevices({"inventory": "nvml"}, str(tmp_path / "state2"),
                         nvml_inventory=lambda registry: FakeNvml(devices=real_devices()))
    w = await whole.allocate(parse("1"), "server:c/")
    assert await whole.prepare_mps(w, "gem-c", 4244, 4244) is None  # whole devices need no MPS
    assert "CUDA_MPS_PIPE_DIRECTORY" not in whole.env(parse("1"), w)
    assert len(record.read_text().splitlines()) == 1


async def test_admin_view_lists_nodes_devices_and_holders(devs):
    await devs.allocate(parse("1(910B)"), server_holder("alice", "gpu"))
    devs.set_maintenance(device="local/2", on=True)
    view = await devs.inventory_view()
    assert view["source"] == "simulated" and [n["name"] for n in view["nodes"]] == ["local", "edge"]
    edge = view["nodes"][1]["devices"][0]
    assert edge["model"] == "910B" and edge["simulated"] is True and edge["status"] == "online"
    assert edge["holders"] == [{"holder": "server:alice/gpu", "kind": "server", "user": "alice", "server": "gpu",
                                "memory_mib": 65536, "compute_percent": 100, "exclusive": True,
                                "mig_profile": None}]
    local2 = next(d for d in view["nodes"][0]["devices"] if d["id"] == "local/2")
    assert local2["status"] == "maintenance" and local2["maintenance"] is True


def test_hub_devices_is_shared_per_state_dir_and_config(tmp_path):
    a = hub_devices(str(tmp_path), CONFIG)
    assert hub_devices(str(tmp_path), dict(CONFIG)) is a
    assert hub_devices(str(tmp_path), {**CONFIG, "policy": "spread"}) is not a
    assert isinstance(a.store, HubProcessStore)


async def test_spawner_state_keeps_the_allocation_across_a_restart(tmp_path):
    from gemhub.spawner.local.spawner import LocalGemSpawner

    def spawner():
        user = types.SimpleNamespace(name="alice", url="/user/alice/", escaped_name="alice",
                                     server=None, id=1, admin=False)
        orm = types.SimpleNamespace(user_options={}, name="", state=None, server=None)
        return LocalGemSpawner(state_dir=str(tmp_path), accelerators=CONFIG, user=user, orm_spawner=orm,
                               hub=types.SimpleNamespace(base_url="/hub/", api_url="http://x/hub/api"))

    sp = spawner()
    sp.allocation = await sp.devices.allocate(parse("1(A100-80G)"), sp.holder)
    state = sp.get_state()
    assert state["accelerator_allocation"]["device_ids"] == ["local/0"]
    # a new hub process: a fresh store, rebuilt from the saved state
    sp.devices.store.__init__()
    assert await sp.devices.holders() == {}
    again = spawner()
    again.load_state(state)
    assert await again.devices.holders() == {"local/0": ["server:alice/"]}
    await again.run_post_stop_hook()
    assert await again.devices.holders() == {}
    again.clear_state()
    assert "accelerator_allocation" not in again.get_state()


async def test_missing_mps_binary_is_a_clear_error(tmp_path, monkeypatch):
    from gemhub.spawner.local.mps import MpsError

    monkeypatch.setenv("PATH", str(tmp_path))
    d = LocalDevices({"inventory": "nvml"}, str(tmp_path / "state"),
                     nvml_inventory=lambda registry: FakeNvml(devices=real_devices()))
    a = await d.allocate(parse("0.5"), "server:a/")
    with pytest.raises(MpsError, match="nvidia-cuda-mps-control is not installed"):
        await d.prepare_mps(a, "gem-a", 1000, 1000)


async def test_a_server_holding_npus_sees_no_gpus(devs):
    a = await devs.allocate(parse("1(910B)"), "server:npu/")
    env = devs.env(parse("1(910B)"), a)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "0"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["NVIDIA_VISIBLE_DEVICES"] == "none"
    g = await devs.allocate(parse("1(RTX4090)"), "server:gpu/")
    env = devs.env(parse("1(RTX4090)"), g)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "" and env["CUDA_VISIBLE_DEVICES"] != ""


async def test_an_unusable_nvml_inventory_is_a_503_and_the_form_still_offers_b1(tmp_path):
    from tornado import web

    from gemhub.spawner.local.spawner import LocalGemSpawner
    from gemhub.spawner.presets import Catalog
    from gemhub.spawner.request import RequestedOptions

    d = LocalDevices({"inventory": "nvml"}, str(tmp_path))
    try:
        if d.devices():
            pytest.skip("this machine has NVIDIA devices")
    except AcceleratorConfigError:
        pass
    user = types.SimpleNamespace(name="bob", url="/user/bob/", escaped_name="bob", server=None, id=2, admin=True)
    sp = LocalGemSpawner(state_dir=str(tmp_path), accelerators={"inventory": "nvml"}, user=user,
                         orm_spawner=types.SimpleNamespace(user_options={}, name="", state=None, server=None),
                         hub=types.SimpleNamespace(base_url="/hub/", api_url="http://x/hub/api"))
    cat = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "1G"},
                               {"name": "P1", "cpu": 1, "memory": "1G", "accelerator": "1"}], "B1")
    form = sp.form_accelerators(cat)
    assert "B1" not in form["never_fits"] and "inventory is unavailable" in form["never_fits"]["P1"]
    sp.workload = types.SimpleNamespace(preset=cat.get("P1"))
    with pytest.raises(web.HTTPError) as e:
        sp.choose_accelerator(RequestedOptions(preset="P1"), {"workspace": {"name": "w"}})
    assert e.value.status_code == 503 and "inventory is unavailable" in e.value.jupyterhub_message


async def test_a_starting_server_never_reuses_a_leftover_allocation(tmp_path):
    from gemhub.spawner.local.spawner import LocalGemSpawner

    user = types.SimpleNamespace(name="cy", url="/user/cy/", escaped_name="cy", server=None, id=3, admin=False)
    sp = LocalGemSpawner(state_dir=str(tmp_path), accelerators=CONFIG, user=user,
                         orm_spawner=types.SimpleNamespace(user_options={}, name="", state=None, server=None),
                         hub=types.SimpleNamespace(base_url="/hub/", api_url="http://x/hub/api"))
    await sp.devices.allocate(parse("1(A100-80G)"), sp.holder)  # left over
    env = (await sp.accelerator_start(parse("0.5(A100-80G)"))).env
    assert not sp.allocation.exclusive and env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert await sp.devices.holders() == {"local/0": ["server:cy/"]}
