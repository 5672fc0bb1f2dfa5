"""Device metrics: utilisation, memory, temperature, power and per-process memory.

Real NVIDIA devices are read through NVML (nvidia-ml-py, imported on the first sample).
A simulated device has no sensors: its sample carries what is known (model, memory size,
that it is simulated) and ``None`` for every reading, never a made-up load.
:func:`prometheus_collector` exposes the readings under dcgm-exporter's metric and label
names, so dashboards built for DCGM work; a reading nobody measured is not exported.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Iterable

from gemhub.spawner.accelerators.inventory import Device, DeviceInventory

log = logging.getLogger(__name__)
MIB = 1024 * 1024


@dataclass(frozen=True)
class DeviceSample:
    device_id: str
    index: int
    uuid: str
    model: str
    simulated: bool
    # None: not measured (a simulated device has nothing to measure)
    utilization_percent: float | None
    memory_used_mib: int | None
    memory_total_mib: int
    temperature_c: float | None
    power_w: float | None
    processes: tuple[tuple[int, int], ...]  # (pid, used MiB) where the driver reports it
    node: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "index": self.index, "uuid": self.uuid,
                "model": self.model, "simulated": self.simulated, "node": self.node,
                "utilization_percent": self.utilization_percent,
                "memory_used_mib": self.memory_used_mib, "memory_total_mib": self.memory_total_mib,
                "temperature_c": self.temperature_c, "power_w": self.power_w,
                "processes": [{"pid": p, "used_mib": m} for p, m in self.processes]}


def simulated_sample(device: Device) -> DeviceSample:
    """What is known of a simulated device: no utilisation, memory use, temperature or
    power, because nothing measures them (a figure shown there would be invented)."""
    return DeviceSample(
        device_id=device.id, index=device.index, uuid=device.uuid, model=device.model,
        simulated=True, utilization_percent=None, memory_used_mib=None,
        memory_total_mib=device.memory_mib, temperature_c=None, power_w=None, processes=(),
        node=device.node)


class GpuSampler:
    """Samples every device of an inventory: NVML for real NVIDIA devices; simulated ones
    report no readings (:func:`simulated_sample`). Devices of other vendors are skipped
    (their exporters are listed in the registry's ``metrics`` entries)."""

    def __init__(self, inventory: DeviceInventory, nvml: Any = None):
        self.inventory = inventory
        self._nvml = nvml

    def nvml(self) -> Any:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py: only when a real device is sampled

            self._nvml = pynvml
        return self._nvml

    def sample(self) -> list[DeviceSample]:
        devices = self.inventory.devices()
        out = [simulated_sample(d) for d in devices if d.simulated]
        real = [d for d in devices if not d.simulated and d.vendor == "nvidia"]
        if real:
            out.extend(self._nvml_samples(real))
        return sorted(out, key=lambda s: (s.node, s.index))

    def _nvml_samples(self, devices: Iterable[Device]) -> list[DeviceSample]:
        nvml = self.nvml()
        nvml.nvmlInit()
        try:
            return [self._nvml_sample(nvml, d) for d in devices]
        finally:
            nvml.nvmlShutdown()

    def _nvml_sample(self, nvml: Any, d: Device) -> DeviceSample:
        handle = nvml.nvmlDeviceGetHandleByUUID(d.uuid)
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        temp = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        try:
            power = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # milliwatts
        except nvml.NVMLError:
            power = float("nan")  # boards without a power sensor
        procs: list[tuple[int, int]] = []
        try:
            for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                # usedGpuMemory is None where the driver cannot attribute memory (MIG, WDDM).
                procs.append((int(p.pid), int(p.usedGpuMemory // MIB) if p.usedGpuMemory else 0))
        except nvml.NVMLError:
            pass
        return DeviceSample(
            device_id=d.id, index=d.index, uuid=d.uuid, model=d.model, simulated=False,
            utilization_percent=float(util), memory_used_mib=int(mem.used // MIB),
            memory_total_mib=int(mem.total // MIB), temperature_c=float(temp), power_w=power,
            processes=tuple(procs), node=d.node)


# dcgm-exporter names, units as DCGM reports them.
DCGM_METRICS = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda s: s.utilization_percent),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda s: s.memory_used_mib),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).",
     lambda s: None if s.memory_used_mib is None else s.memory_total_mib - s.memory_used_mib),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda s: s.temperature_c),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda s: s.power_w),
)
LABELS = ("gpu", "UUID", "device", "modelName", "Hostname", "simulated")


class DeviceCollector:
    """A prometheus_client custom collector; sampling happens at scrape time."""

    def __init__(self, sampler: GpuSampler, hostname: str | None = None):
        self.sampler = sampler
        self.hostname = hostname or socket.gethostname()

    def describe(self):
        return []  # no sampling at registration time (it may touch NVML)

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            samples = self.sampler.sample()
        except Exception:  # a failing driver must not break the hub's /metrics endpoint
            log.exception("sampling accelerators for Prometheus failed")
            samples = []
        families = [(GaugeMetricFamily(name, doc, labels=LABELS), value) for name, doc, value in DCGM_METRICS]
        total = GaugeMetricFamily("gemhub_accelerator_memory_total_mib",
                                  "Device memory (MiB); simulated=\"true\" devices report no readings.",
                                  labels=LABELS)
        procs = GaugeMetricFamily("gemhub_accelerator_process_memory_used_mib",
                                  "Device memory used by one process (MiB), where NVML reports it.",
                                  labels=(*LABELS, "pid"))
        for s in samples:
            labels = [str(s.index), s.uuid, s.device_id, s.model,
                      s.node if s.simulated else self.hostname, "true" if s.simulated else "false"]
            total.add_metric(labels, float(s.memory_total_mib))
            for family, value in families:
                reading = value(s)
                if reading is not None:  # not measured: no series rather than a made-up value
                    family.add_metric(labels, float(reading))
            for pid, used in s.processes:
                procs.add_metric([*labels, str(pid)], float(used))
        for family, _ in families:
            yield family
        yield total
        yield procs


def prometheus_collector(sampler: GpuSampler, hostname: str | None = None) -> DeviceCollector:
    """A collector to ``REGISTRY.register()``; it samples on every scrape."""
    return DeviceCollector(sampler, hostname)
