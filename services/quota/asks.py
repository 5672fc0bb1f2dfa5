"""An admission request, validated (pure: no tornado, no database).

``POST /api/v1/admissions`` sends::

    {"workspace_id": 3, "project_id": 7, "kind": "notebook", "preset": "S1",
     "spec": "0.5(A100-80G)", "cpu": 2, "memory": "8G", "priority": 100,
     "idempotency_key": "...", "holder": "server:alice/", "replace": true}

``preset`` gives CPU, memory and accelerator; ``spec``/``cpu``/``memory`` replace the
preset's (without a preset ``cpu`` and ``memory`` are required). :func:`parse_ask` turns
the body into an :class:`Ask` or raises BadRequest with the reason; :func:`demand` says
what the ask takes from quotas once its devices (if any) are known.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any, Mapping, Sequence

from gemhub.services.common import params
from gemhub.services.common.errors import BadRequest
from gemhub.spawner.accelerators import AcceleratorRequest, Allocation, Device, SpecError, VendorRegistry
from gemhub.spawner.accelerators import format as format_spec
from gemhub.spawner.accelerators import parse as parse_spec
from gemhub.spawner.accelerators.allocator import shared_need
from gemhub.spawner.presets import Catalog, PresetError, parse_memory

from . import quotas
from .quotas import ACCEL, COUNTERS, CPU, KINDS, MEMORY, Amounts

MAX_KEY = 255
MAX_HOLDER = 512
MAX_CPU = Decimal(4096)
ASK_KEYS = {"workspace_id", "project_id", "kind", "preset", "spec", "cpu", "memory", "priority",
            "idempotency_key", "holder", "replace"}
PRIORITY_RANGE = (-1_000_000, 1_000_000)


def bounded_int(value: Any, what: str, lo: int = 0, hi: int = params.INT64_MAX) -> int:
    """A whole number in [lo, hi] (the services' one parser: services.common.params)."""
    return params.whole(value, what, low=lo, high=hi)


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be non-empty text")
    value = value.strip()
    if len(value) > limit:
        raise BadRequest(f"{what} must be at most {limit} characters")
    if any(ord(c) < 32 for c in value):
        raise BadRequest(f"{what} must not contain control characters")
    return value


@dataclass(frozen=True)
class Ask:
    workspace_id: int
    project_id: int
    kind: str
    preset: str | None
    request: AcceleratorRequest
    cpu: Decimal
    memory_mib: int
    priority: int | None   # None: the user's default
    idempotency_key: str
    holder: str
    replace: bool

    @property
    def spec(self) -> str:
        return format_spec(self.request)

    def fingerprint(self, username: str) -> str:
        """What makes two asks with one idempotency key the same ask."""
        data = {"user": username, "ws": self.workspace_id, "p": self.project_id, "kind": self.kind,
                "preset": self.preset, "spec": self.spec, "cpu": str(self.cpu), "mem": self.memory_mib,
                "prio": self.priority, "holder": self.holder}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_priority(value: Any, levels: Mapping[str, int]) -> int | None:
    """An integer, a level name (``high``) or null (the default)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip() in levels:
        return levels[value.strip()]
    try:
        return bounded_int(value, "priority", *PRIORITY_RANGE)
    except BadRequest:
        names = ", ".join(f"{k} ({v})" for k, v in sorted(levels.items(), key=lambda kv: kv[1]))
        raise BadRequest(f"priority must be a whole number or a level name ({names}), "
                         f"not {params.echo(value)}") from None


def parse_ask(body: Any, catalog: Catalog | None, registry: VendorRegistry,
              levels: Mapping[str, int], parse_custom=None) -> Ask:
    """Validate an admission body. ``parse_custom`` parses a custom spec with the runtime's
    inventory (default: the registry alone)."""
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - ASK_KEYS)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(sorted(ASK_KEYS))})")
    for key in ("workspace_id", "project_id", "idempotency_key", "holder"):
        if body.get(key) is None:
            raise BadRequest(f"{key} is required")
    ws = bounded_int(body["workspace_id"], "workspace_id", 1)
    project = bounded_int(body["project_id"], "project_id", 1)
    kind = body.get("kind", "notebook")
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, not {params.echo(kind)}")
    key = _text(body["idempotency_key"], "idempotency_key", MAX_KEY)
    holder = _text(body["holder"], "holder", MAX_HOLDER)
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        raise BadRequest("replace must be true or false")
    preset_name = body.get("preset")
    preset = None
    if preset_name is not None:
        if catalog is None:
            raise BadRequest("this quota service knows no presets: send cpu, memory and spec")
        try:
            preset = catalog.get(preset_name)
        except PresetError as e:
            raise BadRequest(str(e)) from None
    spec = body.get("spec")
    if spec is not None:
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec = str(spec)
        if not isinstance(spec, str) or len(spec) > 200:
            raise BadRequest("spec must be an accelerator spec text like '1(A100-80G)'")
        try:
            request = (parse_custom or (lambda t: parse_spec(t, registry)))(spec)
        except SpecError as e:
            raise BadRequest(str(e)) from None
    elif preset is not None:
        request = preset.request
    else:
        raise BadRequest("send a preset, or cpu, memory and spec")
    if request.kind == "fraction" and request.vendor is not None:
        vendor = registry.find_vendor(request.vendor)
        found = registry.find_model(request.model) if request.model else None
        if vendor is not None and not quotas.sliceable(vendor, found[1] if found else None):
            what = request.model or vendor.display
            raise BadRequest(f"{what} devices cannot be shared: ask for whole devices, not {format_spec(request)!r}")
    cpu_raw = body.get("cpu")
    if cpu_raw is None:
        if preset is None:
            raise BadRequest("cpu is required without a preset")
        cpu = Decimal(repr(preset.cpu))
    else:
        if isinstance(cpu_raw, bool) or not isinstance(cpu_raw, (int, float, str)):
            raise BadRequest(f"cpu must be a number of cores, not {params.echo(cpu_raw)}")
        if isinstance(cpu_raw, float) and not math.isfinite(cpu_raw):
            raise BadRequest("cpu must be a finite number")
        cpu = quotas._number(cpu_raw, "cpu")
        if cpu <= 0 or cpu > MAX_CPU:
            raise BadRequest(f"cpu must be more than 0 and at most {MAX_CPU} cores")
    mem_raw = body.get("memory")
    if mem_raw is None:
        if preset is None:
            raise BadRequest("memory is required without a preset")
        nbytes = preset.memory
    else:
        try:
            nbytes = parse_memory(mem_raw)
        except PresetError as e:
            raise BadRequest(str(e)) from None
    memory_mib = -(-nbytes // (1024 * 1024))
    priority = parse_priority(body.get("priority"), levels)
    return Ask(ws, project, kind, preset.name if preset else None, request, cpu, memory_mib, priority,
               key, holder, replace)


# -- demand ------------------------------------------------------------------------------
def accelerator_keys(request: AcceleratorRequest, registry: VendorRegistry,
                     model: str | None = None) -> list[str]:
    """The quota keys an accelerator counts against: its model, the model's family, its vendor.

    ``model`` is the placed device's model when known (a request for "1" or "1(A100)" lands
    on one concrete model)."""
    keys: list[str] = []
    name = model or request.model
    found = registry.find_model(name) if name else None
    vendor = request.vendor
    if found is not None:
        v, info = found
        vendor = v.key
        keys.append(info.name)
        if info.family and info.family not in keys:
            keys.append(info.family)
    if vendor is None:
        vendor = next(iter(registry.vendors), "nvidia")  # a bare count means the first vendor
    keys.append(vendor)
    return keys


def accelerator_units(request: AcceleratorRequest, registry: VendorRegistry,
                      placement: Allocation | None = None, devices: Mapping[str, Device] | None = None) -> Decimal:
    """Device units: whole devices count 1 each; shares their part of a card."""
    if request.none:
        return Decimal(0)
    kind = request.kind
    if kind == "whole":
        return Decimal(request.count)
    found = registry.find_model(request.model) if request.model else None
    info = found[1] if found else None
    device = devices.get(placement.device_ids[0]) if placement is not None and devices else None
    if device is not None and info is None:
        f = registry.find_model(device.model)
        info = f[1] if f else None
    if kind == "mig" and info is not None and info.mig_compute_slices:
        prof = info.mig_profiles.get(request.mig_profile)
        if prof is not None:
            return _units(Decimal(prof.compute_slices) / Decimal(info.mig_compute_slices))
    if kind == "vnpu":
        tmpl = registry.template(request.vnpu_template)
        if tmpl is not None:
            f = registry.find_model(tmpl.model)
            if f is not None and f[1].vnpu_aicore:
                return _units(Decimal(tmpl.aicore) / Decimal(f[1].vnpu_aicore))
    if kind == "fraction":
        memory = device.memory_mib if device is not None else (info.memory_mib if info else None)
        if placement is not None and memory:
            share = max(Decimal(placement.memory_mib) / Decimal(memory),
                        Decimal(placement.compute_percent) / 100)
            return _units(min(share, Decimal(1)))
        if request.fraction is not None:
            return _units(request.fraction)
        if memory:
            mem, compute = shared_need(request, memory)
            return _units(min(max(Decimal(mem) / Decimal(memory), Decimal(compute) / 100), Decimal(1)))
        if request.compute_percent:
            return _units(Decimal(request.compute_percent) / 100)
    return Decimal(1)


def _units(d: Decimal) -> Decimal:
    return d.quantize(quotas.UNIT_PLACES, rounding=ROUND_UP)


def demand(ask: Ask, registry: VendorRegistry, placement: Allocation | None = None,
           devices: Mapping[str, Device] | None = None) -> Amounts:
    """What ``ask`` takes from its workspace's (and its user's) quota."""
    out: Amounts = {CPU: ask.cpu, MEMORY: Decimal(ask.memory_mib), COUNTERS[ask.kind]: Decimal(1)}
    if not ask.request.none:
        model = None
        if placement is not None and devices:
            dev = devices.get(placement.device_ids[0])
            model = dev.model if dev is not None else None
        units = accelerator_units(ask.request, registry, placement, devices)
        for key in accelerator_keys(ask.request, registry, model):
            out[ACCEL + key] = units
    return out


def scope_keys(ask_request: AcceleratorRequest, registry: VendorRegistry) -> tuple[str, frozenset[str]]:
    """(most specific key, every key) of what an accelerator request waits for: two waiting
    requests compete when either's most specific key is among the other's keys."""
    keys = accelerator_keys(ask_request, registry)
    return keys[0], frozenset(keys)


def compete(a: tuple[str, frozenset[str]] | None, b: tuple[str, frozenset[str]] | None) -> bool:
    if a is None or b is None:
        return False
    return a[0] in b[1] or b[0] in a[1]


def never_fits_devices(request: AcceleratorRequest, devices: Sequence[Device], policy: str,
                       registry: VendorRegistry) -> str | None:
    """Why no idle, serviceable device set could ever hold ``request`` (None: one could)."""
    from dataclasses import replace

    from gemhub.spawner.accelerators import DeviceStatus, NoCapacityError, allocate

    if request.none:
        return None
    idle = [replace(d, status=DeviceStatus.ONLINE) if d.status == DeviceStatus.MAINTENANCE else d
            for d in devices]
    try:
        allocate(idle, [], request, "probe", policy, registry)
    except NoCapacityError as e:
        return e.no_capacity.message
    return None
