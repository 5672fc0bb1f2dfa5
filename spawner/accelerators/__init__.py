"""Accelerators: the spec grammar, the vendor registry, inventory, allocation, rendering
for each runtime, and device metrics. Everything here is plain Python; NVML and the
Kubernetes API are touched only when a method that needs them is called."""

from gemhub.spawner.accelerators.allocator import (
    POLICIES,
    Allocation,
    Capacity,
    NoCapacity,
    NoCapacityError,
    allocate,
)
from gemhub.spawner.accelerators.grammar import (
    NO_ACCELERATOR,
    AcceleratorRequest,
    SpecError,
    format,
    parse,
)
from gemhub.spawner.accelerators.inventory import (
    INVENTORY_MODES,
    AutoInventory,
    Device,
    DeviceInventory,
    DeviceStatus,
    InventoryError,
    KubernetesInventory,
    NoInventory,
    NvmlInventory,
    SimulatedInventory,
    build_inventory,
)
from gemhub.spawner.accelerators.registry import (
    ModelInfo,
    RegistryError,
    Vendor,
    VendorRegistry,
    default_registry,
)
from gemhub.spawner.accelerators.render import (
    KUBE_PROFILES,
    KubeRendering,
    RenderError,
    kubernetes_resources,
    local_env,
)

__all__ = [
    "POLICIES", "Allocation", "Capacity", "NoCapacity", "NoCapacityError", "allocate",
    "NO_ACCELERATOR", "AcceleratorRequest", "SpecError", "format", "parse",
    "Device", "DeviceInventory", "DeviceStatus", "InventoryError", "KubernetesInventory",
    "NoInventory", "NvmlInventory", "SimulatedInventory", "INVENTORY_MODES", "AutoInventory",
    "build_inventory",
    "ModelInfo", "RegistryError", "Vendor", "VendorRegistry", "default_registry",
    "KUBE_PROFILES", "KubeRendering", "RenderError", "kubernetes_resources", "local_env",
]
