"""What a runtime gets for a request: environment variables locally, resources on Kubernetes.

:func:`local_env` turns an allocation into the variables a local process sees (device
visibility, MPS limits for shares of NVIDIA devices, ``GEMHUB_ACCELERATOR``).
:func:`kubernetes_resources` turns a request into container limits, pod annotations and
node selection for one of three sharing stacks: ``native`` (the vendors' device plugins:
whole devices, MIG mixed strategy, time-slicing, static vNPU), ``hami`` and ``volcano``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from gemhub.spawner.accelerators.allocator import Allocation, shared_need
from gemhub.spawner.accelerators.grammar import AcceleratorRequest, format as format_spec
from gemhub.spawner.accelerators.inventory import Device
from gemhub.spawner.accelerators.registry import Vendor, VendorRegistry, default_registry

KUBE_PROFILES = ("native", "hami", "volcano")
DEFAULT_VENDOR = "nvidia"
SHARING_ANNOTATION = "gemhub.io/accelerator-sharing"


class RenderError(ValueError):
    """The request cannot be expressed for this runtime or profile; the message says why."""


# -- local ---------------------------------------------------------------------------------
def local_env(request: AcceleratorRequest, allocation: Allocation | None, devices: Sequence[Device],
              registry: VendorRegistry | None = None, mps_pipe_dir: str | None = None,
              nodes: str = "nodes") -> dict[str, str]:
    """Environment for a local process holding ``allocation`` (None: no accelerator).

    ``nodes`` says how the devices are bound: "nodes" (only the allotted device nodes exist
    in the sandbox and its devices cgroup allows only them) or "variables" (only the
    visible-devices variables name them); it is reported in ``GEMHUB_ACCELERATOR.binding``.
    """
    registry = registry or default_registry()
    by_id = {d.id: d for d in devices}
    env: dict[str, str] = {}
    if request.none or allocation is None:
        # Hide every device this machine has: a process that sees none cannot use one.
        for vendor_key in sorted({d.vendor for d in devices} | {DEFAULT_VENDOR}):
            for var in registry.vendors[vendor_key].visible_env if vendor_key in registry.vendors else ():
                env[var] = ""
        env["NVIDIA_VISIBLE_DEVICES"] = "none"
        env["GEMHUB_ACCELERATOR"] = _accelerator_json(request, None, [], None, "none", binding=nodes)
        return env
    missing = [i for i in allocation.device_ids if i not in by_id]
    if missing:
        raise RenderError(f"allocated device {missing[0]} is not in the inventory")
    held = [by_id[i] for i in allocation.device_ids]
    vendor = registry.vendors.get(held[0].vendor)
    if vendor is None:
        raise RenderError(f"device {held[0].id} has vendor {held[0].vendor!r}, unknown to the registry")
    # Real NVIDIA devices are named by UUID (stable across reboots and PCI reordering);
    # simulated ones by index, since their UUIDs mean nothing to a driver.
    names = [d.index if d.simulated or vendor.key != "nvidia" else d.uuid for d in held]
    visible = ",".join(str(n) for n in names)
    for var in vendor.visible_env:
        env[var] = visible
    enforcement = "exclusive" if allocation.exclusive else "none"
    if not allocation.exclusive and vendor.key == "nvidia":
        # The local runtime does not create MIG instances: a MIG slice is held like a
        # fraction, its profile's memory and compute enforced by MPS on the whole device.
        # MPS clients see their devices renumbered from 0 after CUDA_VISIBLE_DEVICES.
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = ",".join(
            f"{i}={allocation.memory_mib}M" for i in range(len(held)))
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(allocation.compute_percent)
        if mps_pipe_dir:
            env["CUDA_MPS_PIPE_DIRECTORY"] = mps_pipe_dir
        enforcement = "mps"
    env["GEMHUB_ACCELERATOR"] = _accelerator_json(request, allocation, held, vendor.visible_env[0],
                                                  enforcement, binding=nodes)
    return env


def _accelerator_json(request: AcceleratorRequest, allocation: Allocation | None,
                      held: Sequence[Device], visible_env: str | None, enforcement: str,
                      runtime: str = "local", binding: str | None = None) -> str:
    devices = [{
        "id": d.id, "index": d.index, "uuid": d.uuid, "model": d.model,
        "memory_limit_mib": allocation.memory_mib, "memory_total_mib": d.memory_mib,
        "compute_percent": allocation.compute_percent, "mig_profile": allocation.mig_profile,
        "vnpu_template": allocation.vnpu_template,
    } for d in held] if allocation else []
    return json.dumps({
        "spec": format_spec(request), "kind": request.kind,
        "simulated": any(d.simulated for d in held), "visible_env": visible_env,
        "enforcement": enforcement, "runtime": runtime, "devices": devices,
        **({"binding": binding} if binding else {}),
    }, sort_keys=True)


# -- Kubernetes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class KubeRendering:
    limits: dict[str, str]
    annotations: dict[str, str]
    node_selector: dict[str, str]
    env: dict[str, str]
    # Required node affinity terms (matchExpressions) where one label value cannot say it,
    # e.g. "any of these product names" for a model sold as SXM and PCIe boards.
    node_affinity: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"limits": self.limits, "annotations": self.annotations,
                "node_selector": self.node_selector, "node_affinity": self.node_affinity,
                "env": self.env}


def kubernetes_resources(request: AcceleratorRequest, registry: VendorRegistry | None = None,
                         profile: str = "native") -> KubeRendering:
    """Container limits, annotations and node selection for ``request`` under ``profile``."""
    registry = registry or default_registry()
    if profile not in KUBE_PROFILES:
        raise RenderError(f"unknown Kubernetes profile {profile!r} (known: {', '.join(KUBE_PROFILES)})")
    if request.none:
        return KubeRendering({}, {}, {}, _kube_env(request, None, "none", {"NVIDIA_VISIBLE_DEVICES": "none"}))
    vendor = registry.vendor(request.vendor or DEFAULT_VENDOR)
    model = request.model if request.model and request.model in vendor.models else None
    products = _products(registry, vendor, request.model)
    builder = {"native": _native, "hami": _hami, "volcano": _volcano}[profile]
    limits, annotations, enforcement, select = builder(request, registry, vendor, model)
    selector: dict[str, str] = {}
    affinity: list[dict[str, Any]] = []
    label = vendor.node_labels.get("product")
    if select and label and products and vendor.key == "nvidia":
        # GPU feature discovery writes the product name with dashes for spaces.
        values = sorted({p.replace(" ", "-") for p in products})
        if len(values) == 1:
            selector[label] = values[0]
        else:
            affinity.append({"key": label, "operator": "In", "values": values})
    env = _kube_env(request, vendor.visible_env[0], enforcement, {})
    return KubeRendering(limits, annotations, selector, env, affinity)


def _kube_env(request: AcceleratorRequest, visible_env: str | None, enforcement: str,
              env: dict[str, str]) -> dict[str, str]:
    # Devices are chosen by the cluster's scheduler after the pod exists: the list is empty
    # here and the environment's GPU panel reads NVML for the real ones.
    env["GEMHUB_ACCELERATOR"] = json.dumps({
        "spec": format_spec(request), "kind": request.kind, "simulated": False,
        "visible_env": visible_env,
        "enforcement": enforcement, "runtime": "kubernetes", "devices": [],
    }, sort_keys=True)
    return env


def _products(registry: VendorRegistry, vendor: Vendor, model: str | None) -> list[str]:
    """The driver's product names (with spaces, as NVML reports them) of a model or family."""
    if not model or registry.find_model(model) is None:
        return []
    return [p for m in registry.members(model) for p in vendor.models[m].product_names if " " in p]


def _memory_for(request: AcceleratorRequest, registry: VendorRegistry, vendor: Vendor,
                profile: str) -> int:
    if request.memory_mib is not None:
        return request.memory_mib
    if request.model is None:
        raise RenderError(f"the {profile} profile needs a memory size for a share of a "
                          f"{vendor.display} device: name a model (0.5(A100-80G)) or a memory (0.5(20G))")
    return shared_need(request, registry.model(request.model)[1].memory_mib)[0]


def _native(request, registry, vendor: Vendor, model):
    kind = request.kind
    if kind == "whole":
        return {vendor.whole_resource_for(model): str(request.count)}, {}, "exclusive", True
    if kind == "mig":
        if not vendor.mig_resource_prefix:
            raise RenderError(f"{vendor.display} has no MIG resources")
        return {f"{vendor.mig_resource_prefix}{request.mig_profile}": "1"}, {}, "mig", True
    if kind == "vnpu":
        # MindX ascend-device-plugin advertises static vNPUs as huawei.com/<template>.
        return {f"huawei.com/{request.vnpu_template}": "1"}, {}, "vnpu", False
    if not vendor.shared_resource:
        raise RenderError(f"the native profile cannot share a {vendor.display} device: "
                          "use the hami profile (kubernetes_profile: hami)")
    wanted = format_spec(request)
    note = (f"time-slicing: {wanted} is scheduled on a shared replica of a whole GPU; "
            "memory and compute are NOT isolated (use the hami profile for enforced limits)")
    return {vendor.shared_resource: "1"}, {SHARING_ANNOTATION: note}, "time-slicing", True


def _hami(request, registry, vendor: Vendor, model):
    kind = request.kind
    res = vendor.fractional_for("hami", model)
    if res is None:
        if kind == "whole":
            return _native(request, registry, vendor, model)
        raise RenderError(f"HAMi has no sharing resources for {vendor.display} in the registry")
    annotations: dict[str, str] = {}
    if request.model and registry.find_model(request.model) and vendor.annotations.get("use_type"):
        # HAMi matches these against the device type the driver reports.
        types = _products(registry, vendor, request.model) or list(registry.members(request.model))
        annotations[vendor.annotations["use_type"]] = ",".join(types)
    if kind == "whole":
        return {res.count: str(request.count)}, annotations, "exclusive", False
    if kind == "vnpu":
        template = registry.template(request.vnpu_template)
        if res.memory is None:
            raise RenderError(f"HAMi has no memory resource for {vendor.display}")
        # HAMi rounds a memory request up to the smallest template that holds it.
        return ({res.count: "1", res.memory: str(-(-template.memory_mib // res.memory_unit_mib))},
                annotations, "vnpu", False)
    if kind == "mig":
        prof = None
        for m in (registry.members(request.model) if request.model else
                  [n for n, i in vendor.models.items() if request.mig_profile in i.mig_profiles]):
            prof = vendor.models[m].mig_profiles.get(request.mig_profile) or prof
        annotations["nvidia.com/vgpu-mode"] = "mig"  # HAMi dynamic MIG
        return {res.count: "1", res.memory: str(prof.memory_mib)}, annotations, "mig", False
    limits = {res.count: "1"}
    if res.memory is not None:
        if request.memory_mib is None and request.fraction is not None and res.memory_percent:
            limits[res.memory_percent] = str(int(request.fraction * 100))
        else:
            mib = _memory_for(request, registry, vendor, "hami")
            limits[res.memory] = str(-(-mib // res.memory_unit_mib))
    if res.compute is not None:
        compute = request.compute_percent
        if compute is None:
            compute = int(request.fraction * 100) if request.fraction is not None else None
        if compute is not None:
            limits[res.compute] = str(compute)
    return limits, annotations, "hami-core", False


def _volcano(request, registry, vendor: Vendor, model):
    res = vendor.fractional_for("volcano", model)
    kind = request.kind
    if res is None or kind in ("mig", "vnpu"):
        raise RenderError(f"the volcano profile cannot express a {kind} request for {vendor.display}")
    if kind == "whole":
        return {res.count: str(request.count)}, {}, "exclusive", True
    limits = {res.count: "1", res.memory: str(-(-_memory_for(request, registry, vendor, "volcano")
                                                  // res.memory_unit_mib))}
    compute = request.compute_percent
    if compute is None and request.fraction is not None:
        compute = int(request.fraction * 100)
    if compute is not None and res.compute:
        limits[res.compute] = str(compute)
    return limits, {}, "hami-core", True
