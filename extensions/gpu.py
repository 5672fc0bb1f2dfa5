"""This environment's accelerator slice and its live figures (pure apart from the sampler
and the process listing).

The spawner describes the slice in ``GEMHUB_ACCELERATOR`` (JSON, schema in the accelerator
API); figures come from :class:`gemhub.spawner.accelerators.metrics.GpuSampler`: NVML for
real devices. A simulated device has nothing to read: the panel shows what is known (the
allocation, the memory cap, that it is simulated) and no load. The panel shows memory
against the slice's limit (a fraction or MIG slice sees less than the whole card).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

ENV_VAR = "GEMHUB_ACCELERATOR"


class SliceError(ValueError):
    """GEMHUB_ACCELERATOR is not what the spawner writes; the message says what is wrong."""


@dataclass(frozen=True)
class SliceDevice:
    id: str
    index: int
    uuid: str
    vendor: str
    model: str
    memory_limit_mib: int
    memory_total_mib: int
    compute_percent: int
    mig_profile: str | None


@dataclass(frozen=True)
class Slice:
    spec: str
    kind: str
    simulated: bool
    visible_env: str
    devices: tuple[SliceDevice, ...]


NO_SLICE = Slice(spec="0", kind="none", simulated=False, visible_env="", devices=())


def _int(d: Mapping[str, Any], key: str, default: int | None = None) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SliceError(f"device field {key!r} must be a whole number, not {v!r}")
    return v


def parse_slice(text: str | None) -> Slice:
    """The slice from the variable's text; unset or empty means no accelerator."""
    if text is None or not text.strip():
        return NO_SLICE
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SliceError(f"{ENV_VAR} is not JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("devices", []), list):
        raise SliceError(f"{ENV_VAR} must be an object with a 'devices' list")
    devices = []
    for d in data.get("devices", []):
        if not isinstance(d, dict) or not isinstance(d.get("id"), str):
            raise SliceError(f"every device in {ENV_VAR} needs an 'id', got {d!r}")
        total = _int(d, "memory_total_mib", 0)
        devices.append(SliceDevice(
            id=d["id"], index=_int(d, "index", 0), uuid=str(d.get("uuid") or ""),
            vendor=str(d.get("vendor") or "nvidia"), model=str(d.get("model") or "unknown"),
            memory_limit_mib=_int(d, "memory_limit_mib", total) or total,
            memory_total_mib=total, compute_percent=_int(d, "compute_percent", 100),
            mig_profile=d.get("mig_profile"),
        ))
    return Slice(spec=str(data.get("spec", "0")), kind=str(data.get("kind", "none")),
                 simulated=bool(data.get("simulated", False)),
                 visible_env=str(data.get("visible_env") or ""), devices=tuple(devices))


@dataclass(frozen=True)
class DeviceFigures:
    """What the panel shows for one device of the slice."""

    id: str
    index: int
    model: str
    simulated: bool
    utilization_percent: float | None
    memory_used_mib: int | None
    memory_limit_mib: int
    memory_total_mib: int
    temperature_c: float | None
    power_w: float | None
    compute_percent: int
    mig_profile: str | None


def _number(v: Any) -> float | None:
    """A JSON-safe reading: NaN/inf (a board without that sensor) becomes None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _memory_used(s: Any, d: SliceDevice, shared: bool, own_pids: set[int] | None) -> int | None:
    """Memory this environment uses on the device (None: not measured). On a shared card
    (a fraction) the device-wide figure includes other tenants, so it is the sum over this
    environment's own processes when the sampler lists processes (real devices); else
    device-wide."""
    if s.memory_used_mib is None:
        return None
    if shared and own_pids is not None and getattr(s, "processes", ()):
        used = sum(mib for pid, mib in s.processes if pid in own_pids)
    else:
        used = int(s.memory_used_mib)
    return min(used, d.memory_limit_mib)


def figures(slice_: Slice, samples: Sequence[Any], own_pids: set[int] | None = None) -> list[DeviceFigures]:
    """Join the slice with sampler output (DeviceSample objects, matched by id, then uuid).

    A device the sampler did not report keeps its limits with no live figures (None), so
    the panel says "–" rather than showing a made-up zero.
    """
    by_id = {s.device_id: s for s in samples}
    by_uuid = {s.uuid: s for s in samples if s.uuid}
    shared = slice_.kind == "fraction"
    out = []
    for d in slice_.devices:
        s = by_id.get(d.id) or (by_uuid.get(d.uuid) if d.uuid else None)
        out.append(DeviceFigures(
            id=d.id, index=d.index, model=d.model, simulated=slice_.simulated,
            utilization_percent=None if s is None else _number(s.utilization_percent),
            memory_used_mib=None if s is None else _memory_used(s, d, shared, own_pids),
            memory_limit_mib=d.memory_limit_mib, memory_total_mib=d.memory_total_mib,
            temperature_c=None if s is None else _number(s.temperature_c),
            power_w=None if s is None else _number(s.power_w),
            compute_percent=d.compute_percent, mig_profile=d.mig_profile,
        ))
    return out


def inventory_devices(slice_: Slice) -> list[Any]:
    """The slice's devices as accelerator-API ``Device`` records (for a sampler)."""
    from gemhub.spawner.accelerators.inventory import Device, DeviceStatus

    return [
        Device(id=d.id, node=d.id.split("/", 1)[0] if "/" in d.id else "local", index=d.index,
               uuid=d.uuid, vendor=d.vendor, model=d.model, memory_mib=d.memory_total_mib,
               mig_capable=d.mig_profile is not None, status=DeviceStatus.ONLINE,
               simulated=slice_.simulated)
        for d in slice_.devices
    ]


def default_sampler(slice_: Slice) -> Callable[[], Sequence[Any]]:
    """A function returning samples of the slice's devices: the accelerator API's GpuSampler
    over exactly these devices (real ones read through NVML, simulated ones without readings)."""
    from gemhub.spawner.accelerators.inventory import DeviceInventory
    from gemhub.spawner.accelerators.metrics import GpuSampler

    devices = inventory_devices(slice_)

    class _SliceInventory(DeviceInventory):
        def devices(self):
            return list(devices)

    return GpuSampler(_SliceInventory()).sample


def own_processes() -> set[int]:
    """Processes of this environment: those of its unix account (the user's own account in
    the local runtime, the container's user elsewhere)."""
    import psutil

    uid = os.getuid()
    pids = set()
    for p in psutil.process_iter(["uids"]):
        uids = p.info.get("uids")
        if uids is not None and uids.real == uid:
            pids.add(p.pid)
    return pids


def report(slice_: Slice, sample: Callable[[], Sequence[Any]] | None,
           own_pids: Callable[[], set[int]] | None = None) -> dict[str, Any]:
    """The JSON body of GET /gemhub/gpu. A sampler failure (NVML gone, driver reset) is
    reported in ``error`` with the slice's limits still shown."""
    error = None
    samples: Sequence[Any] = ()
    pids: set[int] | None = None
    if slice_.devices and sample is not None:
        try:
            samples = sample()
            if own_pids is not None and slice_.kind == "fraction":
                pids = own_pids()
        except Exception as e:  # the panel must stay up when the driver misbehaves
            error = f"cannot read device figures: {type(e).__name__}: {e}"
    return {
        "spec": slice_.spec, "kind": slice_.kind, "simulated": slice_.simulated,
        "visible_env": slice_.visible_env,
        "devices": [asdict(f) for f in figures(slice_, samples, pids)],
        "error": error,
    }
