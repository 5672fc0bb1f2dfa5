"""The device nodes of an allocation on the local runtime.

A workload's /dev holds exactly the nodes of its devices (``/dev/nvidia3``) plus the
vendor's control nodes (``/dev/nvidiactl``, ...), and its devices cgroup lets it open those
and nothing else (:mod:`.sandbox`), so unsetting ``CUDA_VISIBLE_DEVICES`` reaches nothing.

Simulated devices get simulated nodes: real character devices under
``<state>/devices/nodes/`` with major numbers Linux reserves for local/experimental use
(120-127, Documentation/admin-guide/devices.txt), which no driver serves. They open nothing,
but they exist, so the binding and the cgroup are the same code, tested the same way, as on
a machine with real devices.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Sequence

from gemhub.spawner.accelerators.allocator import Allocation
from gemhub.spawner.accelerators.inventory import Device
from gemhub.spawner.accelerators.registry import VendorRegistry
from gemhub.spawner.local.sandbox import Allotment, Bind, DeviceRule

SIMULATED_MAJOR = {"nvidia": 120, "ascend": 121}
SIMULATED_CONTROL_MINOR = 200  # control node i of a vendor: minor 200 + i


class DeviceNodeError(RuntimeError):
    """A device node the allocation needs is missing on this machine."""


def simulated_dir(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / "devices" / "nodes"


def _node_names(device: Device, registry: VendorRegistry) -> tuple[str, tuple[str, ...]] | None:
    vendor = registry.vendors.get(device.vendor)
    if vendor is None or vendor.device_node is None:
        return None
    minor = device.minor if device.minor is not None else device.index
    return vendor.device_node.replace("{minor}", str(minor)), vendor.control_nodes


def simulated_nodes(devices: Sequence[Device], registry: VendorRegistry) -> dict[str, tuple[int, int]]:
    """name under the simulated folder -> (major, minor) for every simulated device."""
    out: dict[str, tuple[int, int]] = {}
    for d in devices:
        names = _node_names(d, registry)
        major = SIMULATED_MAJOR.get(d.vendor)
        if names is None or major is None or not d.simulated:
            continue
        node, control = names
        out[node] = (major, d.minor if d.minor is not None else d.index)
        for i, c in enumerate(control):
            out[c] = (major, SIMULATED_CONTROL_MINOR + i)
    return out


def ensure_simulated(state_dir: str | os.PathLike, devices: Sequence[Device], registry: VendorRegistry) -> None:
    """Create the simulated nodes (root only; a folder no account can reach)."""
    folder = simulated_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name, (major, minor) in simulated_nodes(devices, registry).items():
        path = folder / name.replace("/", "_")
        try:
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(major, minor):
                continue
            path.unlink()
        except FileNotFoundError:
            pass
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)


def allotment(allocation: Allocation | None, devices: Sequence[Device], registry: VendorRegistry,
              state_dir: str | os.PathLike, stat_node: Callable[[str], os.stat_result] = os.stat) -> Allotment:
    """Binds and cgroup rules for the devices ``allocation`` holds (nothing without one)."""
    if allocation is None:
        return Allotment()
    by_id = {d.id: d for d in devices}
    binds: dict[str, Bind] = {}
    rules: list[DeviceRule] = []
    for dev_id in allocation.device_ids:
        d = by_id.get(dev_id)
        names = _node_names(d, registry) if d is not None else None
        if names is None:
            continue  # a vendor whose nodes GemHub does not know: bound by variables only
        node, control = names
        for name in (node, *control):
            if f"/dev/{name}" in binds:
                continue
            host = str(simulated_dir(state_dir) / name.replace("/", "_")) if d.simulated else f"/dev/{name}"
            try:
                st = stat_node(host)
            except FileNotFoundError:
                if name in control and not d.simulated:
                    continue  # e.g. nvidia-modeset on a machine without a display driver
                raise DeviceNodeError(f"device node {host} of {dev_id} does not exist") from None
            if not stat.S_ISCHR(st.st_mode):
                raise DeviceNodeError(f"{host} is not a character device")
            binds[f"/dev/{name}"] = Bind(host, f"/dev/{name}", "dev")
            rules.append(DeviceRule(os.major(st.st_rdev), os.minor(st.st_rdev)))
    return Allotment(binds=tuple(binds.values()), rules=tuple(rules))


def enforcement(allocation: Allocation | None, devices: Sequence[Device], registry: VendorRegistry) -> str:
    """How the device binding is enforced: "nodes" (only the allotted nodes exist and the
    devices cgroup allows only them) or "variables" (vendors whose nodes GemHub does not know)."""
    if allocation is None:
        return "nodes"
    by_id = {d.id: d for d in devices}
    known = all(by_id.get(i) is not None and _node_names(by_id[i], registry) is not None
                for i in allocation.device_ids)
    return "nodes" if known else "variables"
