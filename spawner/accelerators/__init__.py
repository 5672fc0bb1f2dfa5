"""Accelerators: the spec grammar, the vendor registry, inventory, allocation, rendering
for each runtime, and device metrics. Everything here is plain Python; NVML and the
Kubernetes API are touched only when a method that needs them is called."""

from gemhub.spawner.accelerators.grammar import (
    NO_ACCELERATOR,
    AcceleratorRequest,
    SpecError,
    format,
    parse,
)
from gemhub.spawner.accelerators.registry import (
    ModelInfo,
    RegistryError,
    Vendor,
    VendorRegistry,
    default_registry,
)

__all__ = [
    "NO_ACCELERATOR", "AcceleratorRequest", "SpecError", "format", "parse",
    "ModelInfo", "RegistryError", "Vendor", "VendorRegistry", "default_registry",
]
