"""The accelerator part of LocalGemSpawner (a mixin, so the spawner keeps small hooks only).

- :meth:`choose_accelerator` (from ``apply_user_options``): the workspace's preset limits,
  the custom spec permission, the spec parsed with the platform's registry;
- :meth:`accelerator_start` (from the launch): the placement the quota service's ledger
  chose in the admission (an :class:`Allocation`), MPS started when needed, the environment
  (``CUDA_VISIBLE_DEVICES``, ``GEMHUB_ACCELERATOR``, ...) and the device nodes the sandbox
  gets;
- the allocation is saved in the spawner's state (the ledger is the record of who holds
  what: it is released with the admission, in ``run_post_stop_hook``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Mapping

from traitlets import Dict, HasTraits
from traitlets import Any as AnyTrait

from gemhub.spawner.accelerators import SpecError
from gemhub.spawner.accelerators.allocator import Allocation
from gemhub.spawner.common import user_error
from gemhub.spawner.local.devices import AcceleratorConfigError, LocalDevices, hub_devices
from gemhub.spawner.local.devnodes import DeviceNodeError
from gemhub.spawner.local.mps import SANDBOX_PIPE_DIR, MpsError
from gemhub.spawner.local.sandbox import Allotment, Bind
from gemhub.spawner.presets import PresetError, choose_accelerator
from gemhub.spawner.request import RequestedOptions, RequestError
from gemhub.spawner.summary import AcceleratorLabels


@dataclass(frozen=True)
class DevicePlan:
    """What a server gets for its allocation: variables, device nodes, extra binds."""

    env: dict[str, str]
    allotment: Allotment
    binds: tuple[Bind, ...] = ()


class AcceleratorMixin(HasTraits):
    accelerators = Dict(
        help="The platform's accelerators block: {inventory: auto|nvml|simulated|none, simulated: "
        "[{node, model, count}], policy: binpack|spread, vendors: {registry overrides}, "
        "kubernetes_profile}. Empty: no devices.",
    ).tag(config=True)
    allocation = AnyTrait(None, allow_none=True,
                          help="The devices this server holds (an Allocation from its admission; state).")

    @property
    def devices(self) -> LocalDevices:
        return hub_devices(self.state_dir, self.accelerators, self.log)

    def choose_accelerator(self, requested: RequestedOptions, resolved: Mapping[str, Any]):
        """The accelerator request for this spawn: the preset's, or the user's custom spec
        where the workspace (or being a hub admin) allows it. Raises RequestError."""
        with self._inventory_errors():
            return self._choose_accelerator(requested, resolved)

    @contextmanager
    def _inventory_errors(self):
        """An unusable inventory (e.g. ``inventory: nvml`` without a driver) is a 503 with the
        reason, never a 500."""
        try:
            yield
        except AcceleratorConfigError as e:
            self.log.error("accelerator inventory: %s", e)
            raise user_error(503, f"the accelerator inventory is unavailable: {e}") from None

    def _choose_accelerator(self, requested: RequestedOptions, resolved: Mapping[str, Any]):
        preset = self.workload.preset
        try:
            request = choose_accelerator(preset, requested.accelerator, resolved.get("workspace") or {},
                                         self.is_admin, self.devices.parse)
        except (PresetError, SpecError) as e:
            raise RequestError(str(e)) from None
        reason = self.devices.never_fits(request)
        if reason is not None:
            what = "this accelerator spec" if requested.accelerator else f"preset {preset.name}"
            raise RequestError(f"{what} cannot run on this platform: {reason}")
        return request

    def accelerator_labels(self):
        """The spawn page's words for accelerators ("1 × RTX4090 (24 GiB each) · simulated")."""
        return AcceleratorLabels(self.catalog, self.devices)

    def form_accelerators(self, catalog) -> dict[str, Any]:
        """render_form's accelerator arguments: labels, presets that can never run, admin."""
        devices = self.devices
        try:
            labels = {p.name: devices.describe(p.request) for p in catalog.presets}
            never = {p.name: r for p in catalog.presets if (r := devices.never_fits(p.request))}
        except AcceleratorConfigError as e:  # the form still offers what needs no device
            self.log.error("accelerator inventory: %s", e)
            labels = {}
            never = {p.name: f"the accelerator inventory is unavailable: {e}"
                     for p in catalog.presets if not p.request.none}
        return {"accelerator_labels": labels, "never_fits": never, "is_admin": self.is_admin}

    async def accelerator_start(self, request, account: tuple[str, int, int] | None = None) -> "DevicePlan":
        """The devices the ledger placed ``request`` on (the admission's placement): the
        server's device variables, device nodes and binds (the MPS pipe folder).
        ``account``: (name, uid, gid) it runs as (None when the hub is not root)."""
        if request is None:  # a workload built without choose_accelerator: the preset's
            request = self.workload.preset.request
        placement = (self.admission or {}).get("placement")
        if not request.none and placement is None:
            raise user_error(503, "accelerators are handed out by the quota service, which is not configured")
        self.allocation = Allocation.from_json(placement) if placement else None
        try:
            pipe = await self.devices.prepare_mps(self.allocation, *account) if account else None
            with self._inventory_errors():
                allotment = self.devices.allotment(self.allocation)
        except MpsError as e:
            self.log.error("MPS for %s: %s", self._log_name, e)
            raise user_error(503, "the GPU sharing service (MPS) could not be started; "
                             "ask an administrator") from None
        except DeviceNodeError as e:
            self.log.error("device nodes for %s: %s", self._log_name, e)
            raise user_error(503, f"your accelerator cannot be attached: {e}") from None
        binds = (Bind(str(pipe), SANDBOX_PIPE_DIR, "rw"),) if pipe is not None else ()
        with self._inventory_errors():
            env = self.devices.env(request, self.allocation,
                                   mps_pipe_dir=SANDBOX_PIPE_DIR if pipe is not None else None)
        return DevicePlan(env=env, allotment=allotment, binds=binds)

    # -- state: chained through super() by LocalGemSpawner's own methods -------------------
    def load_state(self, state):
        super().load_state(state)
        saved = state.get("accelerator_allocation")
        self.allocation = Allocation.from_json(saved) if saved else None

    def get_state(self):
        state = super().get_state()
        if self.allocation is not None:
            state["accelerator_allocation"] = self.allocation.to_json()
        return state

    def clear_state(self):
        super().clear_state()
        self.allocation = None
