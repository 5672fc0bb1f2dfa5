"""Spec presets (B basic / S standard / P premium tiers: CPU, memory, accelerator, use,
price) and their catalog (pure)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from gemhub.spawner.accelerators import AcceleratorRequest, SpecError, VendorRegistry, default_registry
from gemhub.spawner.accelerators import format as format_spec
from gemhub.spawner.accelerators import parse as parse_spec
from gemhub.services.common.params import echo

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(iB|i|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_TIER = re.compile(r"^([BSP])(\d+)$")
TIERS = {"B": "basic", "S": "standard", "P": "premium"}
USES = ("development", "training", "inference")


class PresetError(ValueError):
    """A preset definition or a preset choice is wrong; the message says why."""


class UnknownPreset(PresetError):
    pass


def parse_memory(text: object) -> int:
    """Bytes from "2G", "512M", "1.5G", "4Gi", "1024" (binary units). Anything else raises PresetError."""
    if isinstance(text, bool):
        raise PresetError(f"memory must be text like '2G' or '512M', not {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = _MEMORY.match(text) if isinstance(text, str) else None
        if not m or (m.group(3) and m.group(3).lower().startswith("i") and not m.group(2)):
            raise PresetError(f"memory must be text like '2G' or '512M', not {text!r}")
        value = float(m.group(1)) * _UNITS[m.group(2).upper()]
        if not math.isfinite(value):
            raise PresetError(f"memory {text!r} is out of range")
        value = int(value)
    if value <= 0:
        raise PresetError(f"memory must be positive, not {text!r}")
    return value


def format_memory(nbytes: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if nbytes % _UNITS[unit] == 0:
            return f"{nbytes // _UNITS[unit]}{unit}"
    return str(nbytes)


def parse_price(value: object) -> Decimal:
    """Compute points per hour from "1.50" or 2: a Decimal, never a float (YAML 1.5 is refused)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise PresetError(f"price_per_hour must be a whole number or text like '1.50', not {value!r}"
                          " (write decimals as quoted text so no rounding creeps in)")
    if isinstance(value, int):
        price = Decimal(value)
    elif isinstance(value, str):
        try:
            price = Decimal(value.strip())
        except InvalidOperation:
            raise PresetError(f"price_per_hour must be a number like '1.50', not {value!r}") from None
    else:
        raise PresetError(f"price_per_hour must be a number like '1.50', not {value!r}")
    if not price.is_finite() or price < 0:
        raise PresetError(f"price_per_hour must be zero or more, not {value!r}")
    return price


def tier_of(name: str) -> str | None:
    """basic / standard / premium from a name like B1, S2, P1 (None for other names)."""
    m = _TIER.match(name)
    return TIERS[m.group(1)] if m else None


@dataclass(frozen=True)
class Preset:
    name: str
    display_name: str
    cpu: float
    memory: int  # bytes
    description: str = ""
    accelerator: str = "0"  # canonical accelerator spec
    use: str = "development"
    price_per_hour: Decimal = Decimal(0)  # compute points
    request: AcceleratorRequest | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.request is None:
            object.__setattr__(self, "request", parse_spec(self.accelerator))

    @property
    def tier(self) -> str | None:
        return tier_of(self.name)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], registry: VendorRegistry | None = None) -> "Preset":
        if not isinstance(d, Mapping):
            raise PresetError(f"a preset must be a mapping, not {d!r}")
        unknown = set(d) - {"name", "display_name", "cpu", "memory", "description",
                            "accelerator", "use", "price_per_hour"}
        if unknown:
            raise PresetError(f"preset {d.get('name')!r}: unknown keys {sorted(unknown)}")
        name = d.get("name")
        if not isinstance(name, str) or not name.strip():
            raise PresetError(f"a preset needs a name: {dict(d)!r}")
        cpu = d.get("cpu")
        if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not math.isfinite(cpu) or cpu <= 0:
            raise PresetError(f"preset {name!r}: cpu must be a positive number, not {cpu!r}")
        if "memory" not in d:
            raise PresetError(f"preset {name!r}: memory is missing")
        try:
            memory = parse_memory(d["memory"])
        except PresetError as e:
            raise PresetError(f"preset {name!r}: {e}") from None
        display = d.get("display_name") or name
        description = d.get("description") or ""
        if not isinstance(display, str) or not isinstance(description, str):
            raise PresetError(f"preset {name!r}: display_name and description must be text")
        spec = d.get("accelerator", "0")
        if isinstance(spec, bool) or not isinstance(spec, (str, int)):
            raise PresetError(f"preset {name!r}: accelerator must be a spec like '1(A100-80G)', not {spec!r}")
        try:
            request = parse_spec(str(spec), registry or default_registry())
        except SpecError as e:
            raise PresetError(f"preset {name!r}: {e}") from None
        use = d.get("use", "development")
        if use not in USES:
            raise PresetError(f"preset {name!r}: use must be one of {', '.join(USES)}, not {use!r}")
        try:
            price = parse_price(d.get("price_per_hour", 0))
        except PresetError as e:
            raise PresetError(f"preset {name!r}: {e}") from None
        return cls(name=name, display_name=display, cpu=float(cpu), memory=memory,
                   description=description, accelerator=format_spec(request), use=use,
                   price_per_hour=price, request=request)


class Catalog:
    """The configured presets, in order, with a default."""

    def __init__(self, presets: Iterable[Preset], default: str):
        self.presets = list(presets)
        self._by_name = {p.name: p for p in self.presets}
        if len(self._by_name) != len(self.presets):
            raise PresetError("preset names must be unique")
        if not self.presets:
            raise PresetError("no presets are configured")
        if default not in self._by_name:
            raise PresetError(f"default preset {default!r} is not one of {self.names()}")
        self.default = default

    @classmethod
    def from_config(cls, presets: Iterable[Mapping[str, Any]], default: str,
                    registry: VendorRegistry | None = None) -> "Catalog":
        return cls([Preset.from_dict(p, registry) for p in presets], default)

    def names(self) -> list[str]:
        return [p.name for p in self.presets]

    def get(self, name: str | None) -> Preset:
        """The preset called ``name`` (None -> the default); unknown names raise UnknownPreset."""
        if name is None:
            return self._by_name[self.default]
        if not isinstance(name, str) or name not in self._by_name:
            raise UnknownPreset(f"unknown preset {echo(name)} (choose one of {', '.join(self.names())})")
        return self._by_name[name]


def check_workspace_limits(preset: Preset, custom_spec: str | None, workspace: Mapping[str, Any],
                           is_admin: bool) -> None:
    """Refuse a preset the workspace may not use, or a custom spec it may not type.

    ``workspace`` is the quota service's answer (``allowed_presets``: None = every preset;
    ``custom_spec``: whether members may type their own accelerator spec). Hub admins may
    always type a custom spec; the preset list binds everyone.
    """
    name = workspace.get("name", "?")
    allowed = workspace.get("allowed_presets")
    if allowed is not None and preset.name not in allowed:
        choices = ", ".join(allowed) if allowed else "none"
        raise PresetError(f"workspace {name!r} may not use preset {preset.name!r} (allowed: {choices})")
    if custom_spec is not None and not is_admin and not workspace.get("custom_spec"):
        raise PresetError(f"workspace {name!r} may not use a custom accelerator spec; choose a preset "
                          "(an administrator can allow custom specs)")


def choose_accelerator(preset: Preset, custom_spec: str | None, workspace: Mapping[str, Any],
                       is_admin: bool, parse_custom) -> AcceleratorRequest:
    """The accelerator a spawn asks for, on any runtime: the preset's, or ``custom_spec``
    parsed with ``parse_custom`` (the runtime's registry and inventory) where the workspace
    (or being a hub admin) allows it. Raises PresetError or SpecError with the message."""
    check_workspace_limits(preset, custom_spec, workspace, is_admin)
    return preset.request if custom_spec is None else parse_custom(custom_spec)
