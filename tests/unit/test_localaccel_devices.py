"""The local runtime's device adapter: inventory choice, descriptions, environment and MPS
for a placement, and the spawner's state. (Placement and maintenance marks are the quota
service's ledger: tests/unit/test_quota_ledger_service.py.)"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import types

import pytest

from gemhub.spawner.accelerators import parse
from gemhub.spawner.accelerators.allocator import allocate
from gemhub.spawner.accelerators.inventory import SimulatedInventory
from gemhub.spawner.local.devices import AcceleratorConfigError, LocalDevices, check_config, hub_devices

SIM = [{"node": "local", "model": "A100-80G", "count": 1},
       {"node": "local", "model": "RTX4090", "count": 2},
       {"node": "edge", "model": "910B", "count": 1}]
CONFIG = {"inventory": "simulated", "simulated": SIM, "policy": "binpack"}


@pytest.fixture
def devs(tmp_path):
    return LocalDevices(CONFIG, str(tmp_path))


def place(devs: LocalDevices, spec: str, holder: str, held=()):
    """What the ledger would hand out (the same pure allocator on the same inventory)."""
    return allocate(devs.raw_devices(), list(held), parse(spec), holder, "binpack", devs.registry)


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
    d.raw_devices()
    assert d.source == source


def test_auto_without_devices_or_simulated_list_is_none_and_nvml_failure_is_an_error(tmp_path):
    d = LocalDevices({"inventory": "auto", "simulated": []}, str(tmp_path),
                     nvml_inventory=lambda registry: FakeNvml())
    assert d.raw_devices() == [] and d.source == "none"
    d = LocalDevices({"inventory": "nvml"}, str(tmp_path),
                     nvml_inventory=lambda registry: FakeNvml(error=RuntimeError("no driver")))
    with pytest.raises(AcceleratorConfigError, match="no driver"):
        d.raw_devices()


def test_check_config_reports_bad_simulated_entries_and_vendor_overrides():
    check_config(CONFIG)
    with pytest.raises(AcceleratorConfigError, match="simulated"):
        check_config({"simulated": [{"model": "A100-80G", "count": 0}]})
    with pytest.raises(AcceleratorConfigError, match="vendors"):
        check_config({"vendors": {"nvidia": {"models": {"X": {"memory_mib": "lots"}}}}})


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
    a = place(devs, "0.5(A100-80G)", "server:a/")
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
    held = []
    for holder in ("server:a/", "server:b/"):  # one account, two servers: one daemon
        a = place(d, "0.25(A100-80G)", holder, held)
        held.append(a)
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
    w = place(whole, "1", "server:c/")
    assert await whole.prepare_mps(w, "gem-c", 4244, 4244) is None  # whole devices need no MPS
    assert "CUDA_MPS_PIPE_DIRECTORY" not in whole.env(parse("1"), w)
    assert len(record.read_text().splitlines()) == 1


def test_hub_devices_is_shared_per_state_dir_and_config(tmp_path):
    a = hub_devices(str(tmp_path), CONFIG)
    assert hub_devices(str(tmp_path), dict(CONFIG)) is a
    assert hub_devices(str(tmp_path), {**CONFIG, "policy": "spread"}) is not a


async def test_spawner_state_keeps_the_allocation_across_a_restart(tmp_path):
    from gemhub.spawner.local.spawner import LocalGemSpawner

    def spawner():
        user = types.SimpleNamespace(name="alice", url="/user/alice/", escaped_name="alice",
                                     server=None, id=1, admin=False)
        orm = types.SimpleNamespace(user_options={}, name="", state=None, server=None)
        return LocalGemSpawner(state_dir=str(tmp_path), accelerators=CONFIG, user=user, orm_spawner=orm,
                               hub=types.SimpleNamespace(base_url="/hub/", api_url="http://x/hub/api"))

    sp = spawner()
    sp.admission = {"placement": place(sp.devices, "1(A100-80G)", "server:alice/").to_json()}
    plan = await sp.accelerator_start(parse("1(A100-80G)"))
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0"
    sp.admission_id = 7
    state = sp.get_state()
    assert state["accelerator_allocation"]["device_ids"] == ["local/0"] and state["admission_id"] == 7
    again = spawner()  # a new hub process: the device binding and the ledger entry come back
    again.load_state(state)
    assert again.allocation == sp.allocation and again.admission_id == 7
    again.clear_state()
    assert "accelerator_allocation" not in again.get_state()


async def test_a_device_request_without_a_ledger_is_a_503(tmp_path):
    from tornado import web

    from gemhub.spawner.local.spawner import LocalGemSpawner

    user = types.SimpleNamespace(name="dee", url="/user/dee/", escaped_name="dee", server=None, id=4, admin=False)
    sp = LocalGemSpawner(state_dir=str(tmp_path), accelerators=CONFIG, user=user,
                         orm_spawner=types.SimpleNamespace(user_options={}, name="", state=None, server=None),
                         hub=types.SimpleNamespace(base_url="/hub/", api_url="http://x/hub/api"))
    with pytest.raises(web.HTTPError) as e:
        await sp.accelerator_start(parse("1(A100-80G)"))
    assert e.value.status_code == 503 and "quota service" in e.value.jupyterhub_message
    plan = await sp.accelerator_start(parse("0"))  # nothing to place: no ledger needed
    assert plan.env["NVIDIA_VISIBLE_DEVICES"] == "none"


async def test_missing_mps_binary_is_a_clear_error(tmp_path, monkeypatch):
    from gemhub.spawner.local.mps import MpsError

    monkeypatch.setenv("PATH", str(tmp_path))
    d = LocalDevices({"inventory": "nvml"}, str(tmp_path / "state"),
                     nvml_inventory=lambda registry: FakeNvml(devices=real_devices()))
    a = place(d, "0.5", "server:a/")
    with pytest.raises(MpsError, match="nvidia-cuda-mps-control is not installed"):
        await d.prepare_mps(a, "gem-a", 1000, 1000)


async def test_a_server_holding_npus_sees_no_gpus(devs):
    a = place(devs, "1(910B)", "server:npu/")
    env = devs.env(parse("1(910B)"), a)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "0"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["NVIDIA_VISIBLE_DEVICES"] == "none"
    g = place(devs, "1(RTX4090)", "server:gpu/", [a])
    env = devs.env(parse("1(RTX4090)"), g)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "" and env["CUDA_VISIBLE_DEVICES"] != ""


async def test_an_unusable_nvml_inventory_is_a_503_and_the_form_still_offers_b1(tmp_path):
    from tornado import web

    from gemhub.spawner.local.spawner import LocalGemSpawner
    from gemhub.spawner.presets import Catalog
    from gemhub.spawner.request import RequestedOptions

    d = LocalDevices({"inventory": "nvml"}, str(tmp_path))
    try:
        if d.raw_devices():
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
