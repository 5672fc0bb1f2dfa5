"""GPU metrics: NVML sampling (through the pynvml-shaped fake), simulated devices without
invented readings, and the Prometheus exposition under dcgm-exporter's names."""

import math

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gemhub.spawner.accelerators import NvmlInventory, SimulatedInventory
from gemhub.spawner.accelerators.inventory import DeviceInventory
from gemhub.spawner.accelerators.metrics import GpuSampler, prometheus_collector

from accel_fakes import two_boards


def test_nvml_samples_with_per_process_memory():
    fake = two_boards()
    sampler = GpuSampler(NvmlInventory(nvml=fake), nvml=fake)
    a100, rtx = sampler.sample()
    assert fake.initialised == 0
    assert (a100.uuid, a100.model, a100.simulated) == ("GPU-1111", "A100-80G", False)
    assert (a100.utilization_percent, a100.memory_used_mib, a100.memory_total_mib) == (87.0, 20480, 81920)
    assert (a100.temperature_c, a100.power_w) == (61.0, 312.5)
    assert a100.processes == ((4242, 20000), (4343, 0))
    assert math.isnan(rtx.power_w) and rtx.processes == ()


def test_simulated_devices_report_what_is_known_and_no_readings():
    inv = SimulatedInventory.from_config([{"model": "A100-80G", "count": 2}])
    samples = GpuSampler(inv).sample()
    assert [s.device_id for s in samples] == ["local/0", "local/1"]
    for s in samples:
        assert s.simulated and s.model == "A100-80G" and s.memory_total_mib == 81920
        assert (s.utilization_percent, s.memory_used_mib, s.temperature_c, s.power_w) == (None,) * 4
        assert s.processes == ()


def scrape(collector):
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}, text


def test_prometheus_exposition_uses_dcgm_names_and_labels():
    fake = two_boards()
    families, _ = scrape(prometheus_collector(GpuSampler(NvmlInventory(nvml=fake), nvml=fake), hostname="gpu-host"))
    util = families["DCGM_FI_DEV_GPU_UTIL"]
    assert {s.labels["UUID"]: s.value for s in util} == {"GPU-1111": 87.0, "GPU-2222": 0.0}
    label = util[0].labels
    assert (label["gpu"], label["modelName"], label["Hostname"], label["simulated"]) == (
        "0", "A100-80G", "gpu-host", "false")
    assert families["DCGM_FI_DEV_FB_USED"][0].value == 20480
    assert families["DCGM_FI_DEV_FB_FREE"][0].value == 81920 - 20480
    assert families["DCGM_FI_DEV_GPU_TEMP"][0].value == 61
    assert families["DCGM_FI_DEV_POWER_USAGE"][0].value == 312.5
    procs = families["gemhub_accelerator_process_memory_used_mib"]
    assert {s.labels["pid"]: s.value for s in procs} == {"4242": 20000.0, "4343": 0.0}


def test_simulated_metrics_are_marked_and_a_broken_source_does_not_break_scrapes():
    sim = GpuSampler(SimulatedInventory.from_config([{"model": "T4", "node": "sim-a"}]))
    families, _ = scrape(prometheus_collector(sim))
    (sample,) = families["gemhub_accelerator_memory_total_mib"]
    assert sample.labels["simulated"] == "true" and sample.labels["Hostname"] == "sim-a"
    assert sample.value == 15360  # a T4, per the vendor registry
    # nothing was measured, so no load series at all (not a zero either)
    for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
                 "DCGM_FI_DEV_POWER_USAGE"):
        assert families[name] == [], name

    class Broken(DeviceInventory):
        def devices(self):
            raise RuntimeError("driver gone")

    families, text = scrape(prometheus_collector(GpuSampler(Broken())))
    assert families["DCGM_FI_DEV_GPU_UTIL"] == []
