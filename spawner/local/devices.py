"""Accelerators on the local runtime: a thin adapter over :mod:`gemhub.spawner.accelerators`.

It builds the device inventory from the ``accelerators`` configuration block, says what a
request gets and whether it could ever fit, and renders a placement into a server's
environment (plus, on real NVIDIA devices, a per-device MPS control daemon for fractions).

Who holds which device, and the admins' maintenance marks, are not kept here: the quota
service's ledger places every admission on this same inventory (it builds one from the
same block) and is the only record of allocations. No tornado or jupyterhub import here.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from gemhub.spawner.accelerators import AcceleratorRequest, VendorRegistry, default_registry
from gemhub.spawner.accelerators import parse as parse_spec
from gemhub.spawner.accelerators.allocator import Allocation, NoCapacityError, allocate
from gemhub.spawner.accelerators.inventory import (
    Device,
    DeviceInventory,
    DeviceStatus,
    InventoryError,
    NvmlInventory,
    SimulatedInventory,
)
from gemhub.spawner.accelerators.render import local_env
from gemhub.spawner.local import devnodes
from gemhub.spawner.local.mps import MpsDaemons
from gemhub.spawner.local.sandbox import Allotment

DEVICE_CACHE_SECONDS = 5
DEFAULT_CONFIG: dict[str, Any] = {
    "inventory": "none", "simulated": [], "policy": "binpack", "vendors": {},
    "kubernetes_profile": "native",
}


class AcceleratorConfigError(ValueError):
    """The ``accelerators`` configuration block is wrong; the message says where."""


def build_registry(config: Mapping[str, Any]) -> VendorRegistry:
    try:
        return default_registry().with_overrides(config.get("vendors") or {})
    except ValueError as e:
        raise AcceleratorConfigError(f"vendors: {e}") from None


def check_config(config: Mapping[str, Any]) -> VendorRegistry:
    """Validate the block (registry overrides, simulated devices); returns the registry."""
    registry = build_registry(config)
    try:
        SimulatedInventory.from_config(list(config.get("simulated") or []), registry=registry)
    except (ValueError, TypeError, KeyError) as e:
        raise AcceleratorConfigError(f"simulated: {e}") from None
    return registry


class LocalDevices:
    """The local runtime's devices: inventory, descriptions and environments, for one process."""

    def __init__(self, config: Mapping[str, Any], state_dir: str, log: logging.Logger | None = None,
                 nvml_inventory=NvmlInventory):
        self.config = {**copy.deepcopy(DEFAULT_CONFIG), **copy.deepcopy(dict(config or {}))}
        self.state_dir = Path(state_dir)
        self.log = log or logging.getLogger(__name__)
        self.registry = build_registry(self.config)
        self._nvml_inventory = nvml_inventory
        self._inventory: DeviceInventory | None = None
        self.source = ""  # "nvml", "simulated" or "none" once resolved
        self.mps = MpsDaemons(self.state_dir, self.log)
        self._cache: tuple[float, list[Device]] | None = None
        self.stamp = 0  # counts the changes of what raw_devices() answers
        self._metrics = None  # a prometheus CollectorRegistry, made on first scrape

    # -- inventory -------------------------------------------------------------------
    def inventory(self) -> DeviceInventory | None:
        """Resolved on first use (NVML is touched only then)."""
        if self.source:
            return self._inventory
        mode = self.config["inventory"]
        simulated = list(self.config.get("simulated") or [])
        if mode in ("nvml", "auto"):
            nvml = self._nvml_inventory(registry=self.registry)
            try:
                found = nvml.devices()
            except Exception as e:  # no driver / no library: auto falls back, nvml is an error
                if mode == "nvml":
                    raise AcceleratorConfigError(f"accelerators.inventory is nvml but NVML failed: {e}") from e
                self.log.info("NVML is not usable here (%s); falling back", e)
                found = []
            if found or mode == "nvml":
                self._inventory, self.source = nvml, "nvml"
                return nvml
        if mode in ("simulated", "auto") and simulated:
            self._inventory = SimulatedInventory.from_config(simulated, registry=self.registry)
            self.source = "simulated"
            self.log.info("accelerators: %d simulated device(s); no real device is bound",
                          len(self._inventory.devices()))
            return self._inventory
        self._inventory, self.source = None, "none"
        return None

    def raw_devices(self) -> list[Device]:
        """The inventory's devices; NVML answers are reused for a few seconds (one spawn
        page asks once per preset)."""
        inv = self.inventory()
        if inv is None:
            return []
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > DEVICE_CACHE_SECONDS:
            try:
                found = list(inv.devices())
            except InventoryError as e:  # e.g. the driver went away after the hub started
                raise AcceleratorConfigError(str(e)) from e
            # a re-read that finds the same devices keeps its stamp (callers key caches on it)
            if self._cache is None or found != self._cache[1]:
                self.stamp += 1
            self._cache = (now, found)
        return list(self._cache[1])

    # -- requests ----------------------------------------------------------------------
    def parse(self, text: str) -> AcceleratorRequest:
        """A custom spec, checked against the registry and the models present here."""
        models = sorted({d.model for d in self.raw_devices()})
        return parse_spec(text, self.registry, inventory_models=models or None)

    def describe(self, request: AcceleratorRequest) -> str:
        """What the request gets, for people: device model and memory (simulated labelled)."""
        if request.none:
            return "no accelerator"
        # The inventory is read lazily: resolve it now, or the first page rendered after the
        # hub starts would miss the "simulated" label.
        self.inventory()
        found = self.registry.find_model(request.model) if request.model else None
        info = found[1] if found else None
        vendor = self.registry.find_vendor(request.vendor) if request.vendor else None
        model = request.model or (vendor.display if vendor else "GPU")
        if request.kind == "mig":
            profile = self.registry.mig_profile(request.model, request.mig_profile) if request.model else None
            text = f"MIG {request.mig_profile}" + (f" of {model}" if request.model else "")
            if profile is not None:
                text += f" ({_gib(profile.memory_mib)} memory)"
        elif request.kind == "vnpu":
            template = self.registry.template(request.vnpu_template)
            text = f"vNPU {request.vnpu_template}"
            if template is not None:
                text += f" ({_gib(template.memory_mib)} memory, {template.aicore} AI cores)"
        elif request.kind == "fraction":
            share = f"{request.fraction if request.fraction is not None else 'a share'} of one {model}"
            mem = request.memory_mib
            if mem is None and info is not None and request.fraction is not None:
                mem = int(info.memory_mib * request.fraction)
            text = share + (f" ({_gib(mem)} memory cap)" if mem else "")
            if request.compute_percent:
                text += f", {request.compute_percent}% compute"
        else:
            text = f"{request.count} × {model}" + (f" ({_gib(info.memory_mib)} each)" if info else "")
        if self.source == "simulated":
            text += " · simulated"
        return text

    def never_fits(self, request: AcceleratorRequest) -> str | None:
        """Why ``request`` cannot run here even on idle, serviceable devices (None: it can)."""
        if request.none:
            return None
        devices = [dataclasses.replace(d, status=DeviceStatus.ONLINE)
                   if d.status == DeviceStatus.MAINTENANCE else d for d in self.raw_devices()]
        try:
            allocate(devices, [], request, "probe", self.config["policy"], self.registry)
        except NoCapacityError as e:
            return e.no_capacity.message
        return None

    # -- the server's environment --------------------------------------------------------
    def env(self, request: AcceleratorRequest, allocation: Allocation | None,
            mps_pipe_dir: str | None = None) -> dict[str, str]:
        """The server's device variables; ``mps_pipe_dir``: where it sees its MPS pipes."""
        devices = self.raw_devices()
        env = dict(local_env(request, allocation, devices, self.registry, mps_pipe_dir=mps_pipe_dir,
                             nodes=devnodes.enforcement(allocation, devices, self.registry)))
        if allocation is not None:
            # A server holding NPUs must not see this machine's GPUs either (and so on):
            # every other vendor's visible-devices variable is set to "nothing".
            own = {d.vendor for d in devices if d.id in allocation.device_ids}
            for key in sorted(({d.vendor for d in devices} | {"nvidia"}) - own):
                vendor = self.registry.vendors.get(key)
                for var in vendor.visible_env if vendor is not None else ():
                    env.setdefault(var, "none" if var == "NVIDIA_VISIBLE_DEVICES" else "")
        return env

    def _shared(self, allocation: Allocation | None) -> bool:
        return allocation is not None and not allocation.exclusive and not allocation.mig_profile

    async def prepare_mps(self, allocation: Allocation | None, account: str, uid: int, gid: int) -> Path | None:
        """Start the MPS control daemon of ``account`` on the device of a shared (fractional)
        allocation on a real NVIDIA device; returns its pipe folder on the host (None when
        there is nothing to start: simulated devices only get the limits in the
        environment). Raises MpsError."""
        if not self._shared(allocation):
            return None
        if self.source != "nvml":
            self.log.info("accelerators: %s is on a simulated device: no MPS daemon is started "
                          "(the MPS limits are only set in the environment)", allocation.holder)
            return None
        device = next(d for d in self.raw_devices() if d.id == allocation.device_ids[0])
        return await self.mps.ensure(device, account, uid, gid)

    def allotment(self, allocation: Allocation | None) -> Allotment:
        """The device nodes of ``allocation`` (simulated ones made on first use)."""
        devices = self.raw_devices()
        if self.source == "simulated":
            devnodes.ensure_simulated(self.state_dir, devices, self.registry)
        return devnodes.allotment(allocation, devices, self.registry, self.state_dir)

    # -- metrics ---------------------------------------------------------------------------
    async def metrics_text(self) -> bytes:
        """Prometheus text of the devices' DCGM-named metrics (labelled simulated or not)."""
        from prometheus_client import CollectorRegistry, generate_latest

        from gemhub.spawner.accelerators.metrics import GpuSampler, prometheus_collector

        inv = self.inventory()
        if inv is None:
            return b""
        if self._metrics is None:
            self._metrics = CollectorRegistry(auto_describe=False)
            self._metrics.register(prometheus_collector(GpuSampler(inv)))
        return await asyncio.get_running_loop().run_in_executor(None, generate_latest, self._metrics)

def _gib(mib: int) -> str:
    return f"{mib / 1024:g} GiB"


# One LocalDevices per hub process and configuration: the spawners and the hub's device
# pages share one inventory (NVML answers are cached) and MPS daemons (a module-level table
# because both are created by JupyterHub, which offers no other shared object to hang it on).
_HUB_DEVICES: dict[tuple[str, str], LocalDevices] = {}


def hub_devices(state_dir: str, config: Mapping[str, Any], log: logging.Logger | None = None) -> LocalDevices:
    key = (os.path.abspath(state_dir), json.dumps(config, sort_keys=True, default=str))
    if key not in _HUB_DEVICES:
        _HUB_DEVICES[key] = LocalDevices(config, state_dir, log=log)
    return _HUB_DEVICES[key]
