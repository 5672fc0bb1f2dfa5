"""What the ledger knows about the platform: presets, accelerators, runtime and the
scheduling settings of gemhub.yaml (``services.quota``), from one JSON document.

The hub's configurer writes that document into the quota service's environment
(``GEMHUB_QUOTA_PLATFORM``); tests build it directly. No tornado, no database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from gemhub.spawner.accelerators import Device, VendorRegistry, default_registry
from gemhub.spawner.presets import Catalog, PresetError

DEFAULT_LEVELS = {"low": 0, "normal": 100, "high": 200}
DEFAULTS: dict[str, Any] = {
    "runtime": "local",
    "presets": [],
    "default_preset": None,
    "accelerators": {},
    "priority_levels": DEFAULT_LEVELS,
    "default_priority": 100,
    "max_priority": 100,
    "preemptible_kinds": ["job"],
    "borrow_threshold": "0.2",
    "reconcile_seconds": 30,
    "reconcile_grace_seconds": 60,
    "kueue": {"enabled": False, "namespace": ""},
}


class LedgerConfigError(ValueError):
    pass


@dataclass
class LedgerConfig:
    runtime: str = "local"
    catalog: Catalog | None = None
    registry: VendorRegistry = field(default_factory=default_registry)
    accelerators: Mapping[str, Any] = field(default_factory=dict)
    priority_levels: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    default_priority: int = 100
    max_priority: int = 100
    preemptible_kinds: frozenset[str] = frozenset({"job"})
    borrow_threshold: Decimal = Decimal("0.2")
    reconcile_seconds: float = 30
    reconcile_grace_seconds: float = 60
    kueue: Mapping[str, Any] = field(default_factory=lambda: {"enabled": False, "namespace": ""})
    state_dir: str = "var"
    _devices: Any = None  # LocalDevices, made on first use

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, state_dir: str = "var") -> "LedgerConfig":
        raw = {**DEFAULTS, **dict(data or {})}
        unknown = sorted(set(raw) - set(DEFAULTS))
        if unknown:
            raise LedgerConfigError(f"unknown platform keys {unknown}")
        from gemhub.spawner.local.devices import AcceleratorConfigError, build_registry

        try:
            registry = build_registry(raw["accelerators"] or {})
        except AcceleratorConfigError as e:
            raise LedgerConfigError(str(e)) from None
        catalog = None
        if raw["presets"]:
            default = raw["default_preset"] or raw["presets"][0]["name"]
            try:
                catalog = Catalog.from_config(raw["presets"], default, registry)
            except PresetError as e:
                raise LedgerConfigError(f"presets: {e}") from None
        levels = {str(k): int(v) for k, v in (raw["priority_levels"] or DEFAULT_LEVELS).items()}
        if raw["runtime"] not in ("local", "kubernetes"):
            raise LedgerConfigError(f"runtime must be local or kubernetes, not {raw['runtime']!r}")
        return cls(
            runtime=raw["runtime"], catalog=catalog, registry=registry,
            accelerators=dict(raw["accelerators"] or {}), priority_levels=levels,
            default_priority=int(raw["default_priority"]), max_priority=int(raw["max_priority"]),
            preemptible_kinds=frozenset(raw["preemptible_kinds"]),
            borrow_threshold=Decimal(str(raw["borrow_threshold"])),
            reconcile_seconds=float(raw["reconcile_seconds"]),
            reconcile_grace_seconds=float(raw["reconcile_grace_seconds"]),
            kueue=dict(raw["kueue"] or {}), state_dir=state_dir,
        )

    # -- devices (local runtime) ----------------------------------------------------------
    @property
    def local_devices(self):
        """The inventory of this machine (the same block the hub's spawners read)."""
        if self._devices is None:
            from gemhub.spawner.local.devices import LocalDevices

            self._devices = LocalDevices(self.accelerators, self.state_dir, log=logging.getLogger("gemhub.quota"))
        return self._devices

    def devices(self) -> list[Device]:
        """Devices the ledger places requests on (none on Kubernetes: Kueue places there)."""
        if self.runtime != "local" or not self.accelerators:
            return []
        return self.local_devices.raw_devices()

    def devices_stamp(self) -> int:
        """Changes whenever :meth:`devices` would answer something else (after reading it)."""
        if self.runtime != "local" or not self.accelerators:
            return 0
        self.local_devices.raw_devices()
        return self.local_devices.stamp

    @property
    def kueue_enabled(self) -> bool:
        return self.runtime == "kubernetes" and bool(self.kueue.get("enabled"))

    @property
    def namespace(self) -> str:
        """Where the servers' pods (and the LocalQueues) live."""
        if self.kueue.get("namespace"):
            return str(self.kueue["namespace"])
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                return f.read().strip() or "default"
        except OSError:
            return "default"

    @property
    def policy(self) -> str:
        return str(self.accelerators.get("policy") or "binpack")

    def canonical(self, spec: str):
        """A stored (canonical) spec parsed again; cached, as the ledger re-reads the same
        few specs of every queued entry."""
        cache = self.__dict__.setdefault("_parsed", {})
        hit = cache.get(spec)
        if hit is None:
            from gemhub.spawner.accelerators import parse

            hit = cache[spec] = parse(spec, self.registry)
            if len(cache) > 4096:
                cache.clear()
        return hit

    def scope(self, spec: str):
        """What a queued entry of ``spec`` competes for (None: no device)."""
        from .asks import scope_keys

        request = self.canonical(spec)
        return None if request.none else scope_keys(request, self.registry)

    def parse_spec(self, text: str):
        if self.runtime == "local" and self.accelerators:
            return self.local_devices.parse(text)
        from gemhub.spawner.accelerators import parse

        return parse(text, self.registry)
