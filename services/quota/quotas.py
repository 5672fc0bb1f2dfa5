"""Quota arithmetic (pure: no tornado, no database).

A quota is a bag of limits; a request's demand and a workspace's usage are bags of amounts
with the same keys:

- ``cpu`` (cores, may be fractional), ``memory_mib`` (whole MiB);
- ``environments``, ``jobs``, ``inference`` (how many may run at once: whole numbers);
- ``accelerator:<key>`` where key is a device model (``A100-80G``), a model family (``A100``:
  every A100) or a vendor (``nvidia``): accelerator units, a whole device counting 1, a
  0.5 share 0.5 and a MIG profile its share of the card's compute slices.

A demand carries every key its accelerator matches (model, family, vendor), so a quota on
any of them binds it. A missing limit means "no limit"; 0 forbids.

Clients write quotas as JSON: ``{"cpu": "8", "memory": "64G", "environments": 4, "jobs": 2,
"inference": 1, "accelerators": {"A100-80G": 2, "nvidia": "4.5"}}`` (``null`` removes a
limit). Bad values raise :class:`~gemhub.services.common.errors.BadRequest` with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from gemhub.services.common.errors import BadRequest
from gemhub.spawner.accelerators.registry import ModelInfo, Vendor, VendorRegistry
from gemhub.spawner.presets import PresetError, format_memory, parse_memory

CPU, MEMORY = "cpu", "memory_mib"
COUNTERS = {"notebook": "environments", "job": "jobs", "inference": "inference"}
KINDS = tuple(COUNTERS)
ACCEL = "accelerator:"
SCALARS = (CPU, MEMORY, *COUNTERS.values())
MAX_AMOUNT = Decimal(10) ** 9   # far above any cluster; keeps numbers sane in SQLite JSON
UNIT_PLACES = Decimal("0.0001")  # accelerator units are kept to 4 decimal places

Amounts = dict[str, Decimal]


def _number(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"{what} must be a number, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(f"{what} must be a finite number, not {value!r}")
        value = repr(value)
    try:
        d = Decimal(str(value).strip()) if isinstance(value, (int, str)) else None
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite():
        raise BadRequest(f"{what} must be a number, not {value!r}")
    if d < 0:
        raise BadRequest(f"{what} must not be negative (got {value})")
    if d > MAX_AMOUNT:
        raise BadRequest(f"{what} is too large (at most {MAX_AMOUNT})")
    return d


def _whole(value: Any, what: str) -> Decimal:
    d = _number(value, what)
    if d != d.to_integral_value():
        raise BadRequest(f"{what} must be a whole number (got {value})")
    return d.to_integral_value()


def sliceable(vendor: Vendor, model: ModelInfo | None) -> bool:
    """Whether a share of one device can be given out (a sharing stack, MIG or vNPU)."""
    if vendor.shared_resource or vendor.profiles:
        return True
    return model is not None and bool(model.mig_profiles or model.vnpu_templates)


def accelerator_key(registry: VendorRegistry, name: Any) -> tuple[str, Vendor, ModelInfo | None]:
    """The canonical key of an accelerator quota: a model, a family or a vendor."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"accelerator quota keys are model or vendor names, not {name!r}")
    found = registry.find_model(name.strip())
    if found is not None:
        vendor, info = found
        return info.name, vendor, info
    vendor = registry.find_vendor(name.strip())
    if vendor is not None:
        return vendor.key, vendor, None
    raise BadRequest(f"unknown accelerator model or vendor {name!r} in the quota")


def parse_limits(body: Any, registry: VendorRegistry, base: Mapping[str, Decimal] | None = None,
                 what: str = "quota") -> Amounts:
    """Validate a quota body; returns the flat limits (``base`` with the body's changes).

    Every key is checked before anything is returned, so one bad value refuses the whole
    body. ``null`` removes a limit.
    """
    if not isinstance(body, Mapping):
        raise BadRequest(f"the {what} must be a JSON object of limits")
    known = {CPU, "memory", MEMORY, *COUNTERS.values(), "accelerators"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown {what} key(s) {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(known))})")
    if "memory" in body and MEMORY in body:
        raise BadRequest("give memory either as 'memory' (like '64G') or as 'memory_mib', not both")
    out: Amounts = dict(base or {})

    def put(key: str, value: Decimal | None) -> None:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value

    for key in (CPU, *COUNTERS.values()):
        if key in body:
            raw = body[key]
            put(key, None if raw is None else (_number(raw, f"{what} {key}") if key == CPU
                                               else _whole(raw, f"{what} {key}")))
    if "memory" in body:
        raw = body["memory"]
        if raw is None:
            put(MEMORY, None)
        else:
            try:
                nbytes = 0 if raw in (0, "0") else parse_memory(raw)
            except PresetError as e:
                raise BadRequest(f"{what} memory: {e}") from None
            if nbytes % (1024 * 1024):
                raise BadRequest(f"{what} memory must be a whole number of MiB (got {raw!r})")
            put(MEMORY, Decimal(nbytes // (1024 * 1024)))
    if MEMORY in body:
        raw = body[MEMORY]
        put(MEMORY, None if raw is None else _whole(raw, f"{what} memory_mib"))
    if "accelerators" in body:
        acc = body["accelerators"]
        if acc is None:
            for k in [k for k in out if k.startswith(ACCEL)]:
                del out[k]
        elif not isinstance(acc, Mapping):
            raise BadRequest(f"{what} accelerators must be an object of model or vendor -> units")
        else:
            for name, raw in acc.items():
                key, vendor, info = accelerator_key(registry, name)
                if raw is None:
                    put(ACCEL + key, None)
                    continue
                units = _number(raw, f"{what} of {key}")
                if units != units.to_integral_value():
                    if not sliceable(vendor, info):
                        raise BadRequest(f"{key} devices cannot be shared, so its {what} must be a whole "
                                         f"number of devices (got {raw})")
                    if units != units.quantize(UNIT_PLACES):
                        raise BadRequest(f"{what} of {key} has more than 4 decimal places (got {raw})")
                put(ACCEL + key, units)
    return out


def limits_json(limits: Mapping[str, Decimal]) -> dict[str, Any]:
    """Flat limits as the API shows them (and the database stores them)."""
    out: dict[str, Any] = {}
    acc: dict[str, str] = {}
    for key, value in sorted(limits.items()):
        if key.startswith(ACCEL):
            acc[key[len(ACCEL):]] = _text(value)
        elif key == CPU:
            out[CPU] = _text(value)
        else:
            out[key] = int(value)
    if MEMORY in out:
        out["memory"] = format_memory(out[MEMORY] * 1024 * 1024) if out[MEMORY] else "0"
    if acc:
        out["accelerators"] = acc
    return out


def limits_from_json(data: Mapping[str, Any] | None) -> Amounts:
    """The inverse of :func:`limits_json` for stored rows (trusted: no validation)."""
    out: Amounts = {}
    for key, value in (data or {}).items():
        if key == "accelerators":
            for name, units in value.items():
                out[ACCEL + name] = Decimal(str(units))
        elif key != "memory":
            out[key] = Decimal(str(value))
    return out


def _text(d: Decimal) -> str:
    d = d.normalize()
    return f"{d:f}"


def amounts_json(amounts: Mapping[str, Decimal]) -> dict[str, str]:
    return {k: _text(v) for k, v in sorted(amounts.items()) if v}


def amounts_from_json(data: Mapping[str, Any] | None) -> Amounts:
    return {k: Decimal(str(v)) for k, v in (data or {}).items()}


def add(a: Mapping[str, Decimal], b: Mapping[str, Decimal], sign: int = 1) -> Amounts:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, Decimal(0)) + sign * v
    return out


def total(bags: Iterable[Mapping[str, Decimal]]) -> Amounts:
    out: Amounts = {}
    for bag in bags:
        for k, v in bag.items():
            out[k] = out.get(k, Decimal(0)) + v
    return out


@dataclass(frozen=True)
class Excess:
    """One limit a demand would go over."""

    key: str
    limit: Decimal
    used: Decimal
    need: Decimal

    def describe(self, whose: str) -> str:
        return f"{whose}: {label(self.key)} quota {show(self.key, self.limit)}, " \
               f"{show(self.key, self.used)} in use, this needs {show(self.key, self.need)}"


def over(limits: Mapping[str, Decimal], used: Mapping[str, Decimal], need: Mapping[str, Decimal]) -> list[Excess]:
    """The limits ``need`` on top of ``used`` would exceed (empty: it fits)."""
    out = []
    for key, limit in limits.items():
        n = need.get(key, Decimal(0))
        if not n:
            continue
        u = used.get(key, Decimal(0))
        if u + n > limit:
            out.append(Excess(key, limit, u, n))
    return out


def never_fits(limits: Mapping[str, Decimal], need: Mapping[str, Decimal]) -> list[Excess]:
    """The limits ``need`` exceeds on its own (it could not run even with nothing else)."""
    return over(limits, {}, need)


def label(key: str) -> str:
    if key.startswith(ACCEL):
        return key[len(ACCEL):]
    return {CPU: "CPU", MEMORY: "memory", "environments": "environments", "jobs": "jobs",
            "inference": "inference replicas"}.get(key, key)


def show(key: str, value: Decimal) -> str:
    if key == MEMORY:
        return f"{_text(value / 1024)} GiB" if value >= 1024 else f"{_text(value)} MiB"
    if key == CPU:
        return f"{_text(value)} cores"
    if key.startswith(ACCEL):
        return f"{_text(value)} device{'s' if value != 1 else ''}"
    return _text(value)


def check_personal(personal: Mapping[str, Decimal], workspace: Mapping[str, Decimal]) -> None:
    """A member's personal limits stay within the workspace's (where it has one)."""
    for key, value in personal.items():
        ws = workspace.get(key)
        if ws is not None and value > ws:
            raise BadRequest(f"a personal {label(key)} limit of {show(key, value)} is above the "
                             f"workspace's {show(key, ws)}")
