"""The vendor registry: accelerator vendors, models, MIG profiles and vNPU templates (pure).

The data lives in ``vendors.yaml`` next to this module; a platform overrides or extends it
with gemhub.yaml ``accelerators.vendors`` through :meth:`VendorRegistry.with_overrides`.
Every entry is validated when the registry is built, so a wrong override fails at startup
with the offending key in the message rather than at the first spawn.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

import yaml

OVERRIDE_ROOT = "accelerators.vendors"
PROFILES = ("native", "hami", "volcano")


class RegistryError(ValueError):
    """The registry data (shipped or overridden) is malformed; the message names the key."""


@dataclass(frozen=True)
class FractionalResources:
    """Kubernetes extended resources a sharing stack uses for a share of one device."""

    count: str
    memory: str | None = None
    memory_unit_mib: int = 1
    compute: str | None = None
    memory_percent: str | None = None  # memory as a percentage of the device (HAMi)


@dataclass(frozen=True)
class MigProfile:
    name: str              # "1g.10gb"
    compute_slices: int    # GPCs taken out of the model's compute_slices
    memory_slices: int     # memory slices taken out of the model's memory_slices
    memory_mib: int


@dataclass(frozen=True)
class VnpuTemplate:
    name: str              # "Ascend910-4c": also the static vNPU resource suffix
    model: str
    aicore: int
    memory_mib: int
    vendor_name: str | None = None  # the device plugin's own template id when it differs


@dataclass(frozen=True)
class ModelInfo:
    name: str
    vendor: str
    memory_mib: int
    aliases: tuple[str, ...] = ()
    product_names: tuple[str, ...] = ()
    family: str | None = None
    # A family ("A100") matches every member model; a concrete model is its own only member.
    members: tuple[str, ...] = ()
    mig_compute_slices: int = 0
    mig_memory_slices: int = 0
    mig_profiles: Mapping[str, MigProfile] = field(default_factory=dict)
    vnpu_aicore: int = 0
    vnpu_templates: Mapping[str, VnpuTemplate] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mig_capable(self) -> bool:
        return bool(self.mig_profiles)

    @property
    def is_family(self) -> bool:
        return self.members != (self.name,)


@dataclass(frozen=True)
class Vendor:
    key: str
    display: str
    aliases: tuple[str, ...]
    whole_resource: str
    visible_env: tuple[str, ...]
    metrics_source: str
    metrics_exporter: str | None
    models: Mapping[str, ModelInfo]
    shared_resource: str | None = None
    mig_resource_prefix: str | None = None
    profiles: Mapping[str, FractionalResources] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_labels: Mapping[str, str] = field(default_factory=dict)
    # Device nodes under /dev on a local machine: one per device ("nvidia{minor}") and the
    # vendor's control nodes every process using a device needs (nvidiactl, ...); None where
    # the vendor's nodes are not known to GemHub (devices are then bound by variables only).
    device_node: str | None = None
    control_nodes: tuple[str, ...] = ()

    def whole_resource_for(self, model: str | None) -> str:
        info = self.models.get(model) if model else None
        if info is not None and isinstance(info.resources.get("whole"), str):
            return info.resources["whole"]
        return self.whole_resource

    def fractional_for(self, profile: str, model: str | None) -> FractionalResources | None:
        info = self.models.get(model) if model else None
        if info is not None and profile in info.resources:
            return _fractional(info.resources[profile], f"{self.key}.models.{model}.resources.{profile}")
        return self.profiles.get(profile)


class VendorRegistry:
    """Lookup of vendors and models by any accepted spelling (case-insensitive)."""

    def __init__(self, data: Mapping[str, Any]):
        self._data = copy.deepcopy(dict(data))
        vendors = _mapping(self._data.get("vendors"), "vendors")
        self.vendors: dict[str, Vendor] = {k: _vendor(k, v) for k, v in vendors.items()}
        self._vendor_names: dict[str, str] = {}
        self._model_names: dict[str, tuple[str, str]] = {}
        self._families: dict[str, ModelInfo] = {}
        self._templates: dict[str, VnpuTemplate] = {}
        family_members: dict[tuple[str, str], list[ModelInfo]] = {}
        for vkey, vendor in self.vendors.items():
            for alias in (vkey, *vendor.aliases):
                self._claim(self._vendor_names, alias, vkey, f"vendor alias {alias!r}")
            for mname, info in vendor.models.items():
                for alias in (mname, *info.aliases):
                    self._claim(self._model_names, alias, (vkey, mname), f"model alias {alias!r}")
                if info.family:
                    family_members.setdefault((vkey, info.family), []).append(info)
                for tname, template in info.vnpu_templates.items():
                    self._claim(self._templates, tname, template, f"vNPU template {tname!r}")
        for (vkey, fam), infos in family_members.items():
            if fam.lower() in self._model_names:
                raise RegistryError(f"{OVERRIDE_ROOT}.{vkey}: family {fam!r} is also a model name")
            profiles: dict[str, MigProfile] = {}
            for i in infos:
                profiles.update(i.mig_profiles)
            self._families[fam.lower()] = ModelInfo(
                name=fam, vendor=vkey, memory_mib=max(i.memory_mib for i in infos),
                members=tuple(sorted(i.name for i in infos)), mig_profiles=profiles)

    @staticmethod
    def _claim(table: dict, name: str, value: Any, what: str) -> None:
        key = name.lower()
        if key in table and table[key] != value:
            raise RegistryError(f"{OVERRIDE_ROOT}: {what} is claimed twice")
        table[key] = value

    # -- lookups ---------------------------------------------------------------------------
    def vendor(self, name: str) -> Vendor:
        key = self._vendor_names.get(name.lower())
        if key is None:
            raise KeyError(f"unknown accelerator vendor {name!r}")
        return self.vendors[key]

    def find_vendor(self, name: str) -> Vendor | None:
        key = self._vendor_names.get(name.lower())
        return self.vendors[key] if key else None

    def model(self, name: str) -> tuple[Vendor, ModelInfo]:
        found = self.find_model(name)
        if found is None:
            raise KeyError(f"unknown accelerator model {name!r}")
        return found

    def find_model(self, name: str) -> tuple[Vendor, ModelInfo] | None:
        """A concrete model or a family ("A100" = A100-40G and A100-80G) by any alias."""
        hit = self._model_names.get(name.lower())
        if hit is not None:
            return self.vendors[hit[0]], self.vendors[hit[0]].models[hit[1]]
        fam = self._families.get(name.lower())
        if fam is not None:
            return self.vendors[fam.vendor], fam
        return None

    def members(self, model: str) -> tuple[str, ...]:
        """Concrete model names a request for ``model`` (model or family) accepts."""
        _, info = self.model(model)
        return info.members

    def template(self, name: str) -> VnpuTemplate | None:
        return self._templates.get(name.lower())

    def model_for_product(self, product: str) -> tuple[Vendor, ModelInfo] | None:
        """Map a driver's product name ("NVIDIA A100-SXM4-80GB") to a registry model."""
        wanted = _norm_product(product)
        for vendor in self.vendors.values():
            for info in vendor.models.values():
                names = (*info.product_names, info.name, *info.aliases)
                if any(_norm_product(n) == wanted for n in names):
                    return vendor, info
        return None

    def mig_profile(self, model: str, profile: str) -> MigProfile | None:
        found = self.find_model(model)
        return found[1].mig_profiles.get(profile) if found else None

    def all_models(self) -> Iterable[ModelInfo]:
        for vendor in self.vendors.values():
            yield from vendor.models.values()

    def as_data(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "VendorRegistry":
        """A new registry with gemhub.yaml ``accelerators.vendors`` merged over this one."""
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise RegistryError(f"{OVERRIDE_ROOT} must be a mapping of vendor name to settings")
        data = self.as_data()
        for vkey, vdata in overrides.items():
            if not isinstance(vkey, str) or not isinstance(vdata, Mapping):
                raise RegistryError(f"{OVERRIDE_ROOT}.{vkey}: expected a mapping of settings")
            data["vendors"][vkey] = _merge(data["vendors"].get(vkey, {}), vdata)
        return VendorRegistry(data)


@lru_cache(maxsize=1)
def default_registry() -> VendorRegistry:
    """The registry shipped with GemHub (vendors.yaml), parsed once."""
    text = resources.files(__package__).joinpath("vendors.yaml").read_text(encoding="utf-8")
    return VendorRegistry(yaml.safe_load(text))


# -- validation helpers -----------------------------------------------------------------------
_VENDOR_KEYS = {"display", "aliases", "whole_resource", "shared_resource", "mig_resource_prefix",
                "profiles", "annotations", "node_labels", "visible_env", "metrics", "models",
                "device_nodes"}
_MODEL_KEYS = {"memory_mib", "product_names", "aliases", "family", "mig", "vnpu", "resources"}


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v)
        return out
    return copy.deepcopy(over)


def _norm_product(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RegistryError(f"{where}: expected a mapping, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RegistryError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RegistryError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(_text(str(v) if isinstance(v, int) else v, f"{where}[{i}]") for i, v in enumerate(value))


def _unknown(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise RegistryError(f"{where}.{extra[0]}: unknown key (known: {', '.join(sorted(allowed))})")


def _fractional(d: Any, where: str) -> FractionalResources:
    d = _mapping(d, where)
    _unknown(d, {"count", "memory", "memory_unit_mib", "compute", "memory_percent"}, where)
    return FractionalResources(
        count=_text(d.get("count"), f"{where}.count"),
        memory=_text(d["memory"], f"{where}.memory") if d.get("memory") is not None else None,
        memory_unit_mib=_positive(d.get("memory_unit_mib", 1), f"{where}.memory_unit_mib"),
        compute=_text(d["compute"], f"{where}.compute") if d.get("compute") is not None else None,
        memory_percent=(_text(d["memory_percent"], f"{where}.memory_percent")
                        if d.get("memory_percent") is not None else None),
    )


def _model(vkey: str, name: str, d: Any) -> ModelInfo:
    where = f"{OVERRIDE_ROOT}.{vkey}.models.{name}"
    d = _mapping(d, where)
    _unknown(d, _MODEL_KEYS, where)
    memory = _positive(d.get("memory_mib"), f"{where}.memory_mib")
    mig = _mapping(d.get("mig") or {}, f"{where}.mig")
    profiles: dict[str, MigProfile] = {}
    compute_slices = memory_slices = 0
    if mig:
        compute_slices = _positive(mig.get("compute_slices"), f"{where}.mig.compute_slices")
        memory_slices = _positive(mig.get("memory_slices"), f"{where}.mig.memory_slices")
        for pname, p in _mapping(mig.get("profiles"), f"{where}.mig.profiles").items():
            pw = f"{where}.mig.profiles.{pname}"
            p = _mapping(p, pw)
            prof = MigProfile(pname, _positive(p.get("compute"), f"{pw}.compute"),
                              _positive(p.get("memory"), f"{pw}.memory"),
                              _positive(p.get("memory_mib"), f"{pw}.memory_mib"))
            if prof.compute_slices > compute_slices or prof.memory_slices > memory_slices:
                raise RegistryError(f"{pw}: takes more slices than the device has")
            if prof.memory_mib > memory:
                raise RegistryError(f"{pw}.memory_mib: larger than the device's memory")
            profiles[pname] = prof
    vnpu = _mapping(d.get("vnpu") or {}, f"{where}.vnpu")
    templates: dict[str, VnpuTemplate] = {}
    aicore = 0
    if vnpu:
        aicore = _positive(vnpu.get("aicore"), f"{where}.vnpu.aicore")
        for tname, t in _mapping(vnpu.get("templates"), f"{where}.vnpu.templates").items():
            tw = f"{where}.vnpu.templates.{tname}"
            t = _mapping(t, tw)
            tmpl = VnpuTemplate(tname, name, _positive(t.get("aicore"), f"{tw}.aicore"),
                                _positive(t.get("memory_mib"), f"{tw}.memory_mib"),
                                t.get("vendor_name"))
            if tmpl.aicore > aicore or tmpl.memory_mib > memory:
                raise RegistryError(f"{tw}: larger than the device")
            templates[tname] = tmpl
    res = dict(_mapping(d.get("resources") or {}, f"{where}.resources"))
    for rk, rv in res.items():
        if rk == "whole":
            _text(rv, f"{where}.resources.whole")
        elif rk in PROFILES:
            _fractional(rv, f"{where}.resources.{rk}")
        else:
            raise RegistryError(f"{where}.resources.{rk}: unknown key (known: whole, hami, volcano)")
    family = d.get("family")
    return ModelInfo(
        name=name, vendor=vkey, memory_mib=memory,
        aliases=_texts(d.get("aliases"), f"{where}.aliases"),
        product_names=_texts(d.get("product_names"), f"{where}.product_names"),
        family=_text(family, f"{where}.family") if family is not None else None,
        members=(name,), mig_compute_slices=compute_slices, mig_memory_slices=memory_slices,
        mig_profiles=profiles, vnpu_aicore=aicore, vnpu_templates=templates, resources=res,
    )


def _vendor(key: str, d: Any) -> Vendor:
    where = f"{OVERRIDE_ROOT}.{key}"
    d = _mapping(d, where)
    _unknown(d, _VENDOR_KEYS, where)
    metrics = _mapping(d.get("metrics") or {}, f"{where}.metrics")
    profiles = {p: _fractional(v, f"{where}.profiles.{p}")
                for p, v in _mapping(d.get("profiles") or {}, f"{where}.profiles").items()}
    bad = sorted(set(profiles) - set(PROFILES))
    if bad:
        raise RegistryError(f"{where}.profiles.{bad[0]}: unknown profile (known: hami, volcano)")
    models = {str(n): _model(key, str(n), m)
              for n, m in _mapping(d.get("models") or {}, f"{where}.models").items()}
    visible = _texts(d.get("visible_env"), f"{where}.visible_env")
    if not visible:
        raise RegistryError(f"{where}.visible_env: at least one variable is needed")
    opt = {k: _text(d[k], f"{where}.{k}") for k in ("shared_resource", "mig_resource_prefix")
           if d.get(k) is not None}
    nodes = _mapping(d.get("device_nodes") or {}, f"{where}.device_nodes")
    _unknown(nodes, {"device", "control"}, f"{where}.device_nodes")
    if nodes:
        device = _text(nodes.get("device"), f"{where}.device_nodes.device")
        control = _texts(nodes.get("control"), f"{where}.device_nodes.control")
        for n in (device.replace("{minor}", "0"), *control):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?", n) or ".." in n:
                raise RegistryError(f"{where}.device_nodes: {n!r} is not a name under /dev")
        if "{minor}" not in device:
            raise RegistryError(f"{where}.device_nodes.device must contain {{minor}}")
        opt.update(device_node=device, control_nodes=control)
    return Vendor(
        key=key, display=_text(d.get("display", key), f"{where}.display"),
        aliases=_texts(d.get("aliases"), f"{where}.aliases"),
        whole_resource=_text(d.get("whole_resource"), f"{where}.whole_resource"),
        visible_env=visible,
        metrics_source=_text(metrics.get("source", "none"), f"{where}.metrics.source"),
        metrics_exporter=metrics.get("exporter"),
        models=models, profiles=profiles,
        annotations={k: _text(v, f"{where}.annotations.{k}") for k, v in
                     _mapping(d.get("annotations") or {}, f"{where}.annotations").items()},
        node_labels={k: _text(v, f"{where}.node_labels.{k}") for k, v in
                     _mapping(d.get("node_labels") or {}, f"{where}.node_labels").items()},
        **opt,
    )
