"""Placement of accelerator requests on devices (pure).

(devices, current allocations, request, policy) -> :class:`Allocation`, or
:class:`NoCapacityError` with a machine-readable reason. Whole devices are exclusive;
fractions share a device without oversubscribing its memory or compute; MIG profiles and
vNPU templates take hardware slices of a device that is in that mode. Policies follow HAMi:
``binpack`` fills the fullest node and device first (keeps whole nodes free for 8-device
jobs), ``spread`` the emptiest.

:class:`Capacity` is the index behind :func:`allocate`: per-device usage plus per-node
totals, updated incrementally by :meth:`Capacity.add` / :meth:`Capacity.remove`, so a
long-lived caller (a scheduler loop, the benchmark) decides in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from gemhub.spawner.accelerators.grammar import AcceleratorRequest
from gemhub.spawner.accelerators.inventory import Device, DeviceStatus
from gemhub.spawner.accelerators.registry import VendorRegistry, default_registry

POLICIES = ("binpack", "spread")
_ORDERS = ("binpack", "spread", "first")


@dataclass(frozen=True)
class Allocation:
    holder: str                   # "server:alice/" or "job:42"
    device_ids: tuple[str, ...]
    memory_mib: int               # per device
    compute_percent: int          # per device (100 for whole)
    mig_profile: str | None = None
    exclusive: bool = True        # whole device
    vnpu_template: str | None = None

    def to_json(self) -> dict:
        return {"holder": self.holder, "device_ids": list(self.device_ids),
                "memory_mib": self.memory_mib, "compute_percent": self.compute_percent,
                "mig_profile": self.mig_profile, "exclusive": self.exclusive,
                "vnpu_template": self.vnpu_template}

    @classmethod
    def from_json(cls, d: dict) -> "Allocation":
        return cls(holder=str(d["holder"]), device_ids=tuple(d["device_ids"]),
                   memory_mib=int(d["memory_mib"]), compute_percent=int(d["compute_percent"]),
                   mig_profile=d.get("mig_profile"), exclusive=bool(d.get("exclusive", True)),
                   vnpu_template=d.get("vnpu_template"))


@dataclass(frozen=True)
class NoCapacity:
    reason: str    # no_such_model | all_in_maintenance | devices_unavailable | not_mig_capable |
                   # insufficient_devices | insufficient_memory | insufficient_compute |
                   # no_free_slices | device_partitioned | bad_request
    message: str


class NoCapacityError(Exception):
    def __init__(self, reason: str, message: str):
        self.no_capacity = NoCapacity(reason, message)
        super().__init__(message)


class _Usage:
    """What is taken on one device."""

    __slots__ = ("device", "info", "node", "mode", "holders", "memory", "compute", "slices_c",
                 "slices_m", "util")

    def __init__(self, device: Device, info, node: "_Node"):
        self.device = device
        self.info = info                 # registry ModelInfo, None for unregistered models
        self.node = node
        self.mode: str | None = None     # None | whole | shared | mig | vnpu
        self.holders = 0
        self.memory = 0                  # MiB (shared, vnpu)
        self.compute = 0                 # percent (shared) or aicores (vnpu)
        self.slices_c = 0                # MIG compute slices
        self.slices_m = 0                # MIG memory slices
        self.util = 0.0                  # 0..1 share of the device in use


class _Node:
    __slots__ = ("name", "util", "size", "free")

    def __init__(self, name: str):
        self.name = name
        self.util = 0.0
        self.size = 0
        self.free = 0                    # online devices nobody holds any part of

    @property
    def score(self) -> float:
        return self.util / self.size


class Capacity:
    """Free capacity of a set of devices, indexed by device and node."""

    def __init__(self, devices: Sequence[Device], allocations: Iterable[Allocation] = (),
                 registry: VendorRegistry | None = None):
        self.registry = registry or default_registry()
        self.nodes: dict[str, _Node] = {}
        self.usage: dict[str, _Usage] = {}
        for d in devices:
            node = self.nodes.setdefault(d.node, _Node(d.node))
            node.size += 1
            node.free += d.status is DeviceStatus.ONLINE
            self.usage[d.id] = _Usage(d, self._model(d.model), node)
        self._match_cache: dict[tuple, list[_Usage]] = {}
        self._node_cache: dict[tuple, list[tuple[_Node, list[_Usage]]]] = {}
        for a in allocations:
            self.add(a)

    # -- bookkeeping -------------------------------------------------------------------------
    def add(self, a: Allocation) -> None:
        self._apply(a, +1)

    def remove(self, a: Allocation) -> None:
        self._apply(a, -1)

    def _apply(self, a: Allocation, sign: int) -> None:
        for did in a.device_ids:
            u = self.usage.get(did)
            if u is None:
                continue  # the device left the inventory; its allocation no longer counts
            info = u.info
            was_free = u.mode is None
            if a.exclusive:
                mode = "whole"
            elif a.mig_profile:
                mode = "mig"
                prof = info.mig_profiles[a.mig_profile] if info else None
                u.slices_c += sign * (prof.compute_slices if prof else 0)
                u.slices_m += sign * (prof.memory_slices if prof else 0)
            elif a.vnpu_template:
                mode = "vnpu"
                tmpl = info.vnpu_templates.get(a.vnpu_template) if info else None
                u.compute += sign * (tmpl.aicore if tmpl else 0)
                u.memory += sign * a.memory_mib
            else:
                mode = "shared"
                u.memory += sign * a.memory_mib
                u.compute += sign * a.compute_percent
            u.holders += sign
            u.mode = mode if u.holders > 0 else None
            if u.device.status is DeviceStatus.ONLINE:
                u.node.free += (u.mode is None) - was_free
            self._set_util(u, info)

    def _set_util(self, u: _Usage, info) -> None:
        old = u.util
        d = u.device
        if u.mode is None:
            u.util = 0.0
        elif u.mode == "whole" or (u.mode in ("mig", "vnpu") and info is None):
            u.util = 1.0  # (slices of a model the registry no longer knows: treat as full)
        elif u.mode == "mig":
            u.util = max(u.slices_c / info.mig_compute_slices, u.slices_m / info.mig_memory_slices)
        elif u.mode == "vnpu":
            u.util = max(u.compute / info.vnpu_aicore, u.memory / max(d.memory_mib, 1))
        else:
            u.util = max(u.memory / max(d.memory_mib, 1), u.compute / 100)
        u.node.util += u.util - old

    def _model(self, name: str):
        found = self.registry.find_model(name)
        return found[1] if found else None

    # -- queries -----------------------------------------------------------------------------
    def _matching(self, req: AcceleratorRequest) -> list[_Usage]:
        key = (req.vendor, req.model)
        hit = self._match_cache.get(key)
        if hit is None:
            members = None
            if req.model is not None:
                found = self.registry.find_model(req.model)
                members = set(found[1].members) if found else {req.model}
            hit = [u for u in self.usage.values()
                   if (req.vendor is None or u.device.vendor == req.vendor)
                   and (members is None or u.device.model in members)]
            self._match_cache[key] = hit
        return hit

    def _by_node(self, req: AcceleratorRequest, online: list[_Usage]) -> list[tuple[_Node, list[_Usage]]]:
        key = (req.vendor, req.model)
        hit = self._node_cache.get(key)
        if hit is None:
            groups: dict[str, list[_Usage]] = {}
            for u in online:
                groups.setdefault(u.device.node, []).append(u)
            hit = [(self.nodes[n], sorted(us, key=lambda u: u.device.index)) for n, us in groups.items()]
            self._node_cache[key] = hit
        return hit

    def place(self, req: AcceleratorRequest, holder: str, policy: str = "binpack",
              device_policy: str | None = None) -> Allocation:
        """Choose devices for ``req`` and record the allocation.

        ``policy`` alone is GemHub's: ``binpack`` best-fits (the node with the fewest free
        devices that still fits; for shares, the fullest device already shared, else a
        fresh device on the node with the fewest free devices), ``spread`` takes the
        emptiest node and device, ``first`` the first that fits. With ``device_policy``
        the choice is HAMi's two-level one: nodes ordered by ``policy`` on their usage
        score, then devices by ``device_policy`` on theirs.
        """
        if policy not in _ORDERS or (device_policy or policy) not in _ORDERS:
            raise ValueError(f"unknown allocation policy {policy!r} (known: {', '.join(POLICIES)})")
        if req.none:
            raise NoCapacityError("bad_request", "the request asks for no accelerator")
        matching = self._matching(req)
        what = req.model or (self.registry.vendors[req.vendor].display if req.vendor else "accelerator")
        if not matching:
            raise NoCapacityError("no_such_model", f"there are no {what} devices on this platform")
        online = [u for u in matching if u.device.status is DeviceStatus.ONLINE]
        if not online:
            if all(u.device.status is DeviceStatus.MAINTENANCE for u in matching):
                raise NoCapacityError("all_in_maintenance", f"every {what} device is in maintenance")
            raise NoCapacityError("devices_unavailable", f"no {what} device is online")
        kind = req.kind
        if kind == "whole":
            return self._whole(req, holder, online, policy, device_policy is not None, what)
        return self._slice(req, holder, online, policy, device_policy, what)

    def _whole(self, req, holder, online, policy, two_level, what) -> Allocation:
        n = req.count
        best = None
        best_key = None
        largest = 0
        for node, units in self._by_node(req, online):
            free = [u for u in units if u.mode is None]
            largest = max(largest, len(units))
            if len(free) < n:
                continue
            if two_level:
                key = _node_key(node, policy)
            elif policy == "binpack":
                key = (-len(free), round(node.score, 9), _neg_name(node.name))
            else:
                key = (len(free), round(-node.score, 9), _neg_name(node.name))
            if best is None or key > best_key:
                best, best_key = free, key
                if policy == "first":
                    break
        if best is None:
            if n > largest:
                msg = f"{n} × {what} do not fit on one node (the largest has {largest})"
            else:
                msg = f"no node has {n} free {what} device{'s' if n > 1 else ''} right now"
            raise NoCapacityError("insufficient_devices", msg)
        chosen = best[:n]  # free devices are empty, so device order only keeps indices low
        memory = min(u.device.memory_mib for u in chosen)
        alloc = Allocation(holder, tuple(u.device.id for u in chosen), memory, 100)
        self.add(alloc)
        return alloc

    def _slice(self, req, holder, online, policy, device_policy, what) -> Allocation:
        kind = req.kind
        best = None
        best_key = None
        best_need = None
        failures: set[str] = set()
        for u in online:
            need = self._fits(req, kind, u, failures)
            if need is None:
                continue
            if policy == "first":
                best, best_need = u, need
                break
            if device_policy is not None:
                key = (*_node_key(u.node, policy), _util_key(u.util, device_policy), -u.device.index)
            elif policy == "binpack":
                key = (u.mode is not None, u.util, -u.node.free, round(u.node.score, 9), -u.device.index)
            else:
                key = (round(-u.node.score, 9), -u.util, -u.device.index)
            if best is None or key > best_key:
                best, best_key, best_need = u, key, need
        if best is None:
            raise NoCapacityError(*_slice_failure(kind, failures, what))
        memory, compute = best_need
        alloc = Allocation(holder, (best.device.id,), memory, compute,
                           mig_profile=req.mig_profile, exclusive=False,
                           vnpu_template=req.vnpu_template)
        self.add(alloc)
        return alloc

    def _fits(self, req, kind, u: _Usage, failures: set[str]) -> tuple[int, int] | None:
        """(memory MiB, compute percent) the request takes on ``u``, or None if it does not fit."""
        d = u.device
        if kind == "mig":
            info = u.info
            prof = info.mig_profiles.get(req.mig_profile) if info else None
            if prof is None or not d.mig_capable:
                failures.add("not_mig_capable")
                return None
            if u.mode not in (None, "mig") or u.slices_c + prof.compute_slices > info.mig_compute_slices \
                    or u.slices_m + prof.memory_slices > info.mig_memory_slices:
                failures.add("no_free_slices")
                return None
            return prof.memory_mib, round(100 * prof.compute_slices / info.mig_compute_slices)
        if kind == "vnpu":
            info = u.info
            tmpl = info.vnpu_templates.get(req.vnpu_template) if info else None
            if tmpl is None:
                failures.add("no_such_model")
                return None
            if u.mode not in (None, "vnpu") or u.compute + tmpl.aicore > info.vnpu_aicore \
                    or u.memory + tmpl.memory_mib > d.memory_mib:
                failures.add("no_free_slices")
                return None
            return tmpl.memory_mib, round(100 * tmpl.aicore / info.vnpu_aicore)
        memory, compute = shared_need(req, d.memory_mib)
        if memory > d.memory_mib:
            failures.add("insufficient_memory")
            return None
        if u.mode not in (None, "shared"):
            failures.add("insufficient_memory" if u.mode == "whole" else "device_partitioned")
            return None
        if u.memory + memory > d.memory_mib:
            failures.add("insufficient_memory")
            return None
        if u.compute + compute > 100:
            failures.add("insufficient_compute")
            return None
        return memory, compute

    def free_whole(self) -> dict[str, int]:
        """Completely free online devices per node."""
        out = {n: 0 for n in self.nodes}
        for u in self.usage.values():
            if u.mode is None and u.device.status is DeviceStatus.ONLINE:
                out[u.device.node] += 1
        return out


def shared_need(req: AcceleratorRequest, device_memory_mib: int) -> tuple[int, int]:
    """Memory (MiB) and compute (percent) a fractional request takes on a device of that size.

    A fraction f means f of the memory and f*100 % of compute unless given explicitly; a
    request that names only one of memory and compute gets the other in proportion.
    """
    if req.fraction is not None:
        share = req.fraction
        memory = req.memory_mib if req.memory_mib is not None else int(share * device_memory_mib)
        compute = req.compute_percent if req.compute_percent is not None else int(share * 100)
    elif req.memory_mib is not None:
        memory = req.memory_mib
        compute = req.compute_percent if req.compute_percent is not None else \
            max(1, -(-100 * memory // device_memory_mib))
    else:
        compute = req.compute_percent or 100
        memory = device_memory_mib * compute // 100
    return max(memory, 1), max(min(compute, 100), 1)


def _node_key(node: _Node, policy: str) -> tuple:
    # binpack prefers the fullest node, spread the emptiest; the name breaks ties stably.
    score = node.score if policy == "binpack" else -node.score
    return (round(score, 9), _neg_name(node.name))


def _util_key(util: float, policy: str) -> float:
    return util if policy == "binpack" else -util


def _neg_name(name: str) -> tuple:
    return tuple(-ord(c) for c in name)


def _slice_failure(kind: str, failures: set[str], what: str) -> tuple[str, str]:
    for reason, message in (
        ("no_free_slices", f"every {what} device that supports it has no free slice left"),
        ("insufficient_memory", f"no {what} device has that much free memory"),
        ("insufficient_compute", f"no {what} device has that much free compute"),
        ("device_partitioned", f"every {what} device with room is partitioned into MIG or vNPU slices"),
        ("not_mig_capable", f"no {what} device here supports that MIG profile"),
    ):
        if reason in failures:
            return reason, message
    return "no_such_model", f"no {what} device offers that vNPU template"


def allocate(devices: Sequence[Device], allocations: Sequence[Allocation], request: AcceleratorRequest,
             holder: str, policy: str = "binpack", registry: VendorRegistry | None = None) -> Allocation:
    """Place ``request`` for ``holder``; raise :class:`NoCapacityError` with the reason."""
    if policy not in POLICIES:
        raise ValueError(f"unknown allocation policy {policy!r} (known: {', '.join(POLICIES)})")
    return Capacity(devices, allocations, registry).place(request, holder, policy)
