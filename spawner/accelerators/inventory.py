"""Device inventories: which accelerators exist, on which node, in which state.

Three sources behind one shape (:class:`Device`): NVML on this machine, a simulated
inventory from configuration (for development and tests, labelled ``simulated`` wherever
it shows), and the allocatable extended resources of Kubernetes nodes. NVML and the
Kubernetes API are only touched inside ``devices()``, never at import or construction.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Mapping

from gemhub.spawner.accelerators.registry import VendorRegistry, default_registry


class InventoryError(ValueError):
    """The inventory configuration is wrong, or the device source could not be read."""


class DeviceStatus(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    FAULT = "fault"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True)
class Device:
    id: str            # stable: "<node>/<index>", or "<node>/<uuid>" where uuids are real
    node: str
    index: int
    uuid: str
    vendor: str
    model: str
    memory_mib: int
    mig_capable: bool
    status: DeviceStatus
    simulated: bool
    mig_enabled: bool = False  # MIG mode is on right now (NVML only)
    minor: int | None = None  # the device node's minor number (e.g. /dev/nvidia<minor>); local only

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "node": self.node, "index": self.index, "uuid": self.uuid,
                "vendor": self.vendor, "model": self.model, "memory_mib": self.memory_mib,
                "mig_capable": self.mig_capable, "mig_enabled": self.mig_enabled,
                "status": self.status.value, "simulated": self.simulated}


class DeviceInventory(ABC):
    @abstractmethod
    def devices(self) -> list[Device]:
        """The devices now; may touch the hardware (call it off the event loop if slow)."""


class NoInventory(DeviceInventory):
    """A platform without accelerators."""

    def devices(self) -> list[Device]:
        return []


class SimulatedInventory(DeviceInventory):
    """Devices that exist only in configuration, e.g. ``[{"model": "A100-80G", "count": 2}]``.

    Entry keys: ``model`` (registry model), ``count`` (default 1), ``node`` (default
    "local"), ``status`` (default online), ``memory_mib`` and ``vendor`` (required only for
    models the registry does not know).
    """

    def __init__(self, devices: Iterable[Device]):
        self._devices = list(devices)

    def devices(self) -> list[Device]:
        return list(self._devices)

    @classmethod
    def from_config(cls, entries: Any, registry: VendorRegistry | None = None) -> "SimulatedInventory":
        registry = registry or default_registry()
        if not isinstance(entries, list):
            raise InventoryError("accelerators.simulated must be a list of {model, count, node} entries")
        next_index: dict[str, int] = {}
        out: list[Device] = []
        for i, entry in enumerate(entries):
            where = f"accelerators.simulated[{i}]"
            if not isinstance(entry, Mapping):
                raise InventoryError(f"{where}: expected a mapping like {{model: A100-80G, count: 2}}")
            unknown = sorted(set(entry) - {"model", "count", "node", "status", "memory_mib", "vendor"})
            if unknown:
                raise InventoryError(f"{where}.{unknown[0]}: unknown key")
            model = entry.get("model")
            if not isinstance(model, str) or not model:
                raise InventoryError(f"{where}.model: expected a model name such as A100-80G")
            count = entry.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
                raise InventoryError(f"{where}.count: expected a whole number from 1 to 64")
            node = entry.get("node", "local")
            if not isinstance(node, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", node):
                raise InventoryError(f"{where}.node: expected a node name (letters, digits, . _ -)")
            try:
                status = DeviceStatus(entry.get("status", "online"))
            except ValueError:
                raise InventoryError(f"{where}.status: expected one of "
                                     f"{', '.join(s.value for s in DeviceStatus)}") from None
            found = registry.find_model(model)
            if found is not None and not found[1].is_family:
                vendor, info = found
                name, vkey, memory, mig = info.name, vendor.key, info.memory_mib, info.mig_capable
            elif found is not None:
                raise InventoryError(f"{where}.model: {model!r} is a family; name one of "
                                     f"{', '.join(found[1].members)}")
            else:
                vkey, memory = entry.get("vendor"), entry.get("memory_mib")
                if not isinstance(vkey, str) or registry.find_vendor(vkey) is None:
                    raise InventoryError(f"{where}.model: {model!r} is not in the registry; give "
                                         "vendor and memory_mib, or add it to accelerators.vendors")
                vkey = registry.vendor(vkey).key
                name, mig = model, False
            if "memory_mib" in entry:
                memory = entry["memory_mib"]
            if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
                raise InventoryError(f"{where}.memory_mib: expected a positive whole number of MiB")
            for _ in range(count):
                index = next_index.get(node, 0)
                next_index[node] = index + 1
                out.append(Device(
                    id=f"{node}/{index}", node=node, index=index,
                    uuid=f"SIM-{vkey.upper()}-{node}-{index:02d}", vendor=vkey, model=name,
                    memory_mib=memory, mig_capable=mig, status=status, simulated=True, minor=index))
        return cls(out)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlInventory(DeviceInventory):
    """NVIDIA devices of this machine via nvidia-ml-py.

    ``nvml`` is a pynvml-shaped module; by default ``pynvml`` is imported on the first
    ``devices()`` call, so constructing this on a machine without a GPU is harmless.
    """

    def __init__(self, registry: VendorRegistry | None = None, nvml: Any = None, node: str = "local"):
        self.registry = registry or default_registry()
        self._nvml = nvml
        self.node = node

    def nvml(self) -> Any:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py: imported only when the hardware is asked for

            self._nvml = pynvml
        return self._nvml

    def devices(self) -> list[Device]:
        nvml = self.nvml()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as e:
            raise InventoryError(f"NVML is not available: {e}") from e
        try:
            return [self._device(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
        finally:
            nvml.nvmlShutdown()

    def _device(self, nvml: Any, index: int) -> Device:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        product = _text(nvml.nvmlDeviceGetName(handle))
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        status = DeviceStatus.ONLINE
        try:
            memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024)
        except nvml.NVMLError:
            # A device that cannot report its memory is not fit for new work.
            memory, status = 0, DeviceStatus.FAULT
        found = self.registry.model_for_product(product)
        model = found[1].name if found else _model_from_product(product)
        mig_capable = bool(found and found[1].mig_capable)
        mig_enabled = False
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
            mig_capable = True
            mig_enabled = current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
        except nvml.NVMLError:
            mig_capable = False  # NVML_ERROR_NOT_SUPPORTED: the board has no MIG
        if memory == 0 and found:
            memory = found[1].memory_mib
        try:  # /dev/nvidia<minor>: usually the index, but not where boards were reordered
            minor = int(nvml.nvmlDeviceGetMinorNumber(handle))
        except nvml.NVMLError:
            minor = None
        return Device(id=f"{self.node}/{uuid}", node=self.node, index=index, uuid=uuid,
                      vendor="nvidia", model=model, memory_mib=memory, mig_capable=mig_capable,
                      status=status, simulated=False, mig_enabled=mig_enabled, minor=minor)


def _model_from_product(product: str) -> str:
    name = re.sub(r"^(NVIDIA|Tesla)\s+", "", product.strip())
    return re.sub(r"\s+", "-", name) or "unknown"


# -- Kubernetes ----------------------------------------------------------------------------
def devices_from_nodes(nodes: Iterable[Mapping[str, Any]], registry: VendorRegistry | None = None) -> list[Device]:
    """Devices from a node list (``kubectl get nodes -o json`` items).

    Each node advertises whole devices as allocatable extended resources; NVIDIA's GPU
    feature discovery labels the product (spaces as dashes) and memory in MiB. Kubernetes
    does not publish device UUIDs, so ids are ``<node>/<resource>/<n>``.
    """
    registry = registry or default_registry()
    out: list[Device] = []
    for node in nodes:
        meta = node.get("metadata") or {}
        name = meta.get("name") or "?"
        labels = meta.get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        status = _node_status(node)
        for vendor in registry.vendors.values():
            resources = {vendor.whole_resource} | {
                m.resources["whole"] for m in vendor.models.values() if "whole" in m.resources}
            for resource in sorted(resources):
                count = _quantity(allocatable.get(resource))
                if not count:
                    continue
                model, memory, mig = _node_model(vendor, resource, labels, registry)
                for index in range(count):
                    out.append(Device(
                        id=f"{name}/{resource}/{index}", node=name, index=index,
                        uuid=f"{name}/{resource}/{index}", vendor=vendor.key, model=model,
                        memory_mib=memory, mig_capable=mig, status=status, simulated=False))
    return out


def _quantity(value: Any) -> int:
    try:
        return max(int(str(value)), 0) if value is not None else 0
    except ValueError:
        return 0  # fractional quantities ("500m") are not whole devices


def _node_status(node: Mapping[str, Any]) -> DeviceStatus:
    if (node.get("spec") or {}).get("unschedulable"):
        return DeviceStatus.MAINTENANCE  # cordoned: no new work, like maintenance
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return DeviceStatus.ONLINE if cond.get("status") == "True" else DeviceStatus.OFFLINE
    return DeviceStatus.OFFLINE


def _node_model(vendor, resource: str, labels: Mapping[str, str], registry: VendorRegistry):
    for info in vendor.models.values():
        if info.resources.get("whole") == resource:
            return info.name, info.memory_mib, info.mig_capable
    product = labels.get(vendor.node_labels.get("product", ""), "")
    found = None
    # GFD writes "NVIDIA-A100-SXM4-80GB"; Ascend nodes are labelled "huawei-Ascend910".
    for candidate in (product, product.split("-", 1)[-1]) if product else ():
        found = found or registry.model_for_product(candidate)
    memory = _quantity(labels.get(vendor.node_labels.get("memory", "")))
    if found and found[0].key == vendor.key:
        return found[1].name, memory or found[1].memory_mib, found[1].mig_capable
    return (product or "unknown"), memory, False


class KubernetesInventory:
    """Devices of a cluster's nodes, read through kubernetes_asyncio on each call."""

    def __init__(self, registry: VendorRegistry | None = None,
                 api_client_factory: Callable[[], Any] | None = None):
        self.registry = registry or default_registry()
        self._factory = api_client_factory

    async def devices(self) -> list[Device]:
        from kubernetes_asyncio import client, config  # imported only when asked

        if self._factory is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                await config.load_kube_config()
            api_client = client.ApiClient()
        else:
            api_client = self._factory()
        async with api_client:
            nodes = await client.CoreV1Api(api_client).list_node()
            items = api_client.sanitize_for_serialization(nodes).get("items", [])
        return devices_from_nodes(items, self.registry)


INVENTORY_MODES = ("auto", "nvml", "simulated", "none")


class AutoInventory(DeviceInventory):
    """NVML devices when this machine has a working NVIDIA driver, else the fallback.

    Decided on the first ``devices()`` call (not at construction) and then kept, so a
    hub without a GPU starts without touching NVML at import time.
    """

    def __init__(self, nvml_inventory: NvmlInventory, fallback: DeviceInventory):
        self._nvml = nvml_inventory
        self._fallback = fallback
        self._chosen: DeviceInventory | None = None

    def devices(self) -> list[Device]:
        if self._chosen is None:
            try:
                found = self._nvml.devices()
            except (ImportError, InventoryError):
                found = []
            self._chosen = self._nvml if found else self._fallback
            if found:
                return found
        return self._chosen.devices()


def build_inventory(mode: str, simulated: Any = None, registry: VendorRegistry | None = None,
                    nvml: Any = None) -> DeviceInventory:
    """The inventory gemhub.yaml ``accelerators.inventory`` (+ ``simulated``) asks for."""
    if mode not in INVENTORY_MODES:
        raise InventoryError(f"accelerators.inventory must be one of {', '.join(INVENTORY_MODES)}, not {mode!r}")
    registry = registry or default_registry()
    if mode == "none":
        return NoInventory()
    if mode == "simulated":
        return SimulatedInventory.from_config(simulated or [], registry)
    if mode == "nvml":
        return NvmlInventory(registry, nvml=nvml)
    fallback = SimulatedInventory.from_config(simulated, registry) if simulated else NoInventory()
    return AutoInventory(NvmlInventory(registry, nvml=nvml), fallback)
