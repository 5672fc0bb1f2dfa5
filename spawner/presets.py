"""Spec presets (CPU and memory tiers) and their catalog (pure)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(iB|i|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


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


@dataclass(frozen=True)
class Preset:
    name: str
    display_name: str
    cpu: float
    memory: int  # bytes
    description: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preset":
        if not isinstance(d, Mapping):
            raise PresetError(f"a preset must be a mapping, not {d!r}")
        unknown = set(d) - {"name", "display_name", "cpu", "memory", "description"}
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
        return cls(name=name, display_name=display, cpu=float(cpu), memory=memory,
                   description=description)


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
    def from_config(cls, presets: Iterable[Mapping[str, Any]], default: str) -> "Catalog":
        return cls([Preset.from_dict(p) for p in presets], default)

    def names(self) -> list[str]:
        return [p.name for p in self.presets]

    def get(self, name: str | None) -> Preset:
        """The preset called ``name`` (None -> the default); unknown names raise UnknownPreset."""
        if name is None:
            return self._by_name[self.default]
        if not isinstance(name, str) or name not in self._by_name:
            raise UnknownPreset(f"unknown preset {name!r} (choose one of {', '.join(self.names())})")
        return self._by_name[name]
