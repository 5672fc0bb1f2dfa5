"""The accelerator spec grammar: request text <-> :class:`AcceleratorRequest` (pure).

One parser for the whole platform (presets, the spawn form's custom spec, the CLI). It
accepts every form cube-studio users type, full-width punctuation included::

    0   ""   1   2(V100)   0.5   0.5(vgpu)   8G,0.5   1(npu,910B)   8(Ascend910B)
    1(Ascend910-4c)   1(mig-1g.10gb)   1(vgpu,10G,30%)   0.25(A100)   8(A100-80G)

and rejects anything else with a :class:`SpecError` that says at which column what was
expected. Unlike cube-studio's parser, a typo never silently becomes "no GPU".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from gemhub.spawner.accelerators.registry import VendorRegistry, default_registry

MAX_COUNT = 64
# Full-width punctuation from Chinese input methods: one character each, so the column
# of every later character is unchanged by the translation.
_FULLWIDTH = str.maketrans({"（": "(", "）": ")", "，": ",", "％": "%", "\u3000": " "})
_INT = re.compile(r"\d+")
_DECIMAL = re.compile(r"\d*\.\d+")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)(m|mb|mi|mib|g|gb|gi|gib|t|tb|ti|tib)", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+)%")
_MIG = re.compile(r"(?:mig-)?(\d+g\.\d+gb)", re.IGNORECASE)
_SHARE_MARKERS = {"vgpu", "shared"}
_WORD_END = set("(),") | {" ", "\t"}
_EXPECTED_ARG = ("a vendor (nvidia, npu, mlu, dcu, ...), a model (V100, A100-80G, 910B, ...), "
                 "mig-<profile>, a vNPU template (Ascend910-4c), a memory like 10G or a compute "
                 "share like 30%")


class SpecError(ValueError):
    """The spec text is not a valid accelerator request.

    ``position`` is the 0-based offset in the text (the message says the 1-based column);
    ``expected`` says what would have been valid there.
    """

    def __init__(self, text: str, message: str, position: int | None = None,
                 expected: str | None = None):
        self.text = text
        self.position = position
        self.expected = expected
        where = f" at column {position + 1}" if position is not None else ""
        hint = f"; expected {expected}" if expected else ""
        super().__init__(f"accelerator spec {text!r}{where}: {message}{hint}")


@dataclass(frozen=True)
class AcceleratorRequest:
    vendor: str | None = None
    model: str | None = None
    count: int = 0
    fraction: Decimal | None = None
    memory_mib: int | None = None
    compute_percent: int | None = None
    mig_profile: str | None = None
    vnpu_template: str | None = None

    @property
    def none(self) -> bool:
        return self.count == 0

    @property
    def kind(self) -> str:
        if self.count == 0:
            return "none"
        if self.mig_profile:
            return "mig"
        if self.vnpu_template:
            return "vnpu"
        if self.fraction is not None or self.memory_mib is not None or self.compute_percent is not None:
            return "fraction"
        return "whole"

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": format(self), "kind": self.kind, "vendor": self.vendor, "model": self.model,
            "count": self.count,
            "fraction": str(self.fraction) if self.fraction is not None else None,
            "memory_mib": self.memory_mib, "compute_percent": self.compute_percent,
            "mig_profile": self.mig_profile, "vnpu_template": self.vnpu_template,
        }


NO_ACCELERATOR = AcceleratorRequest()


@dataclass(frozen=True)
class _Word:
    text: str
    pos: int
    args: tuple["_Word", ...] | None = None  # the parenthesised list after a head


def _scan(src: str, text: str) -> list[_Word]:
    """Split into top-level comma-separated words, each with an optional (args) list."""
    i, n = 0, len(src)
    items: list[_Word] = []

    def skip(i: int) -> int:
        while i < n and src[i] in " \t":
            i += 1
        return i

    def word(i: int, what: str) -> tuple[str, int, int]:
        i = skip(i)
        start = i
        while i < n and src[i] not in _WORD_END:
            i += 1
        if i == start:
            got = repr(src[i]) if i < n else "the end"
            raise SpecError(text, f"found {got}", start, what)
        return src[start:i], start, i

    while True:
        w, start, i = word(i, "a device count like 1, a fraction like 0.5 or a memory like 8G")
        i = skip(i)
        args = None
        if i < n and src[i] == "(":
            args_list: list[_Word] = []
            i += 1
            while True:
                a, astart, i = word(i, _EXPECTED_ARG)
                args_list.append(_Word(a, astart))
                i = skip(i)
                if i < n and src[i] == ",":
                    i += 1
                    continue
                if i < n and src[i] == ")":
                    i = skip(i + 1)
                    break
                raise SpecError(text, f"found {src[i]!r}" if i < n else "the bracket is not closed",
                                i, "',' or ')'")
            args = tuple(args_list)
        items.append(_Word(w, start, args))
        if i >= n:
            return items
        if src[i] != ",":
            raise SpecError(text, f"found {src[i]!r}", i, "',' or the end of the spec")
        i += 1


def _memory_mib(w: _Word, text: str) -> int | None:
    m = _MEMORY.fullmatch(w.text)
    if not m:
        return None
    unit = m.group(2)[0].lower()
    mib = Decimal(m.group(1)) * {"m": 1, "g": 1024, "t": 1024 * 1024}[unit]
    if mib != mib.to_integral_value() or mib <= 0:
        raise SpecError(text, f"memory {w.text!r} is not a positive whole number of MiB", w.pos,
                        "a memory like 10G or 10240M")
    return int(mib)


class _Builder:
    def __init__(self, text: str, registry: VendorRegistry, inventory: set[str] | None):
        self.text = text
        self.reg = registry
        self.inventory = inventory
        self.vendor: str | None = None
        self.vendor_at: _Word | None = None
        self.model: str | None = None
        self.model_at: _Word | None = None
        self.memory: int | None = None
        self.memory_at: _Word | None = None
        self.compute: int | None = None
        self.mig: str | None = None
        self.mig_at: _Word | None = None
        self.template: str | None = None
        self.shared_marker: _Word | None = None

    def fail(self, w: _Word | None, message: str, expected: str | None = None) -> SpecError:
        return SpecError(self.text, message, w.pos if w else None, expected)

    def set_vendor(self, key: str, w: _Word) -> None:
        if self.vendor and self.vendor != key:
            raise self.fail(w, f"{w.text!r} is {self.reg.vendors[key].display}, but "
                               f"{self.vendor_at.text!r} already chose "
                               f"{self.reg.vendors[self.vendor].display}", "models of one vendor")
        if self.vendor is None:
            self.vendor, self.vendor_at = key, w

    def once(self, current: Any, w: _Word, what: str) -> None:
        if current is not None:
            raise self.fail(w, f"a second {what} {w.text!r}", f"at most one {what}")

    def arg(self, w: _Word) -> None:
        low = w.text.lower()
        if low in _SHARE_MARKERS:
            self.shared_marker = w
            return
        if (mem := _memory_mib(w, self.text)) is not None:
            self.once(self.memory, w, "memory")
            self.memory, self.memory_at = mem, w
            return
        if (m := _PERCENT.fullmatch(w.text)) is not None:
            self.once(self.compute, w, "compute share")
            value = int(m.group(1))
            if not 1 <= value <= 100:
                raise self.fail(w, f"compute share {w.text} is out of range", "1% to 100%")
            self.compute = value
            return
        if (v := self.reg.find_vendor(w.text)) is not None:
            self.set_vendor(v.key, w)
            return
        if (t := self.reg.template(w.text)) is not None:
            self.once(self.template, w, "vNPU template")
            self.template = t.name
            self.set_model(t.model, w)
            return
        if (found := self.reg.find_model(w.text)) is not None:
            self.set_model(found[1].name, w)
            return
        if (m := _MIG.fullmatch(w.text)) is not None:
            self.once(self.mig, w, "MIG profile")
            self.mig, self.mig_at = m.group(1).lower(), w
            self.set_vendor("nvidia", w)
            return
        if self.inventory is not None:
            for name in self.inventory:
                if name.lower() == low and self.reg.find_model(name) is None:
                    self.set_model(name, w, registered=False)
                    return
        raise self.fail(w, f"unknown {w.text!r}", _EXPECTED_ARG)

    def set_model(self, name: str, w: _Word, registered: bool = True) -> None:
        if self.model is not None and self.model != name:
            raise self.fail(w, f"a second model {w.text!r} (already {self.model})", "at most one model")
        if registered:
            vendor, _ = self.reg.model(name)
            self.set_vendor(vendor.key, w)
        self.model, self.model_at = name, w

    # -- checks once every word is read ------------------------------------------------------
    def candidates(self) -> list[str]:
        """Concrete registry models the request could land on (inventory-restricted)."""
        if self.model is not None:
            found = self.reg.find_model(self.model)
            names = list(found[1].members) if found else [self.model]
        else:
            names = [m.name for m in self.reg.all_models()
                     if self.vendor is None or m.vendor == self.vendor]
        if self.inventory is not None:
            names = [n for n in names if n in self.inventory]
        return names

    def check(self, count: int) -> None:
        if self.inventory is not None and (self.model or self.vendor) and not self.candidates():
            w = self.model_at or self.vendor_at
            here = ", ".join(sorted(self.inventory)) or "none"
            raise self.fail(w, f"no {w.text} devices on this platform", f"one of the models here: {here}")
        if self.mig is not None:
            infos = [i for i in map(self._model_info, self.candidates()) if i is not None]
            models = [i.name for i in infos if self.mig in i.mig_profiles]
            if not models:
                where = f"the {self.model}" if self.model else "any model here"
                raise self.fail(self.mig_at, f"MIG profile {self.mig!r} does not exist on {where}",
                                "a profile such as mig-1g.10gb on a MIG-capable model")
            extra = self.memory_at or self.shared_marker
            if extra or self.compute is not None:
                raise self.fail(extra or self.mig_at, "a MIG profile fixes memory and compute",
                                "the profile alone, like 1(mig-1g.10gb)")
        if self.template is not None and (self.memory is not None or self.compute is not None):
            raise self.fail(self.memory_at, "a vNPU template fixes memory and compute",
                            "the template alone, like 1(Ascend910-4c)")
        if self.memory is not None:
            # Models only the inventory knows have no registry size: nothing to check against.
            sizes = [i.memory_mib for i in map(self._model_info, self.candidates()) if i is not None]
            limit = max(sizes, default=None)
            if limit is not None and self.memory > limit:
                raise self.fail(self.memory_at, f"memory {self.memory_at.text} is more than the "
                                f"largest matching device has", f"at most {_mem_text(limit)}")
        if (self.mig or self.template) and count != 1:
            raise SpecError(self.text, "a MIG profile or vNPU template is one slice of one device",
                            0, "1(...)")

    def _model_info(self, name: str):
        found = self.reg.find_model(name)
        return found[1] if found else None


def _mem_text(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def parse(text: str, registry: VendorRegistry | None = None,
          inventory_models: Iterable[str] | None = None) -> AcceleratorRequest:
    """Parse spec text; raise :class:`SpecError` (never return "none" for bad text)."""
    if not isinstance(text, str):
        raise SpecError(repr(text), f"a spec is text, not {type(text).__name__}")
    registry = registry or default_registry()
    src = text.translate(_FULLWIDTH)
    if not src.strip():
        return NO_ACCELERATOR
    inventory = set(inventory_models) if inventory_models is not None else None
    b = _Builder(text, registry, inventory)
    head: _Word | None = None
    for item in _scan(src, text):
        if _INT.fullmatch(item.text) or _DECIMAL.fullmatch(item.text):
            if head is not None:
                raise b.fail(item, f"a second count {item.text!r}", "one count or fraction")
            head = item
            for a in item.args or ():
                b.arg(a)
        elif item.args is None and (_memory_mib(item, text) is not None or _PERCENT.fullmatch(item.text)):
            b.arg(item)  # cube-studio's "8G,0.5": memory before the fraction
        elif item.text.startswith("-"):
            raise b.fail(item, f"a device count cannot be negative ({item.text})",
                         "0 for no accelerator or a count like 1")
        else:
            raise b.fail(item, f"found {item.text!r}",
                         "a device count like 1, a fraction like 0.5 or a memory like 8G")
    if head is None:
        raise SpecError(text, "there is no device count or fraction", len(src),
                        "a count like 1 or a fraction like 0.5")
    fraction: Decimal | None = None
    if _INT.fullmatch(head.text):
        count = int(head.text)
        if count > MAX_COUNT:
            raise b.fail(head, f"{count} devices is more than any node has", f"at most {MAX_COUNT}")
    else:
        value = Decimal(head.text)
        if not 0 < value < 1:
            raise b.fail(head, f"{head.text} is not a share of one device",
                         "a fraction between 0 and 1 (like 0.5) or a whole count (like 2)")
        if value.as_tuple().exponent < -2:
            raise b.fail(head, f"{head.text} is finer than a whole percent",
                         "at most two decimal places")
        fraction, count = value.normalize(), 1
    if count == 0:
        extra = (head.args[0] if head.args else None) or b.memory_at
        if extra is not None or b.compute is not None:
            raise b.fail(extra or head, "0 means no accelerator and takes nothing else",
                         "a count of at least 1 with a model, or just 0")
        return NO_ACCELERATOR
    shared = fraction is not None or b.memory is not None or b.compute is not None
    if shared and count > 1:
        raise b.fail(b.memory_at or head, "a memory or compute share applies to one device",
                     "1(vgpu,10G,30%) or a fraction like 0.5")
    if b.shared_marker is not None and not shared:
        raise b.fail(b.shared_marker, "a shared device needs a size",
                     "a fraction like 0.5, a memory like 10G or a compute share like 30%")
    if fraction is not None and (b.mig or b.template):
        raise b.fail(head, "a fraction cannot be combined with a MIG profile or vNPU template",
                     "1(mig-...) or 1(<template>)")
    b.check(count)
    return AcceleratorRequest(
        vendor=b.vendor, model=b.model, count=count, fraction=fraction, memory_mib=b.memory,
        compute_percent=b.compute, mig_profile=b.mig, vnpu_template=b.template,
    )


def format(req: AcceleratorRequest) -> str:  # noqa: A001 - the contract's name
    """Canonical text for a request; ``parse(format(r)) == r`` for every parsed ``r``."""
    if req.none:
        return "0"
    head = str(req.count) if req.fraction is None else _fraction_text(req.fraction)
    args: list[str] = []
    implied = req.model is not None or req.mig_profile is not None or req.vnpu_template is not None
    if req.vendor and not implied:
        args.append(req.vendor)
    if req.model and not req.vnpu_template:
        args.append(req.model)
    if req.mig_profile:
        args.append(f"mig-{req.mig_profile}")
    if req.vnpu_template:
        args.append(req.vnpu_template)
    if req.fraction is None and (req.memory_mib is not None or req.compute_percent is not None):
        args.append("vgpu")
    if req.memory_mib is not None:
        args.append(_mem_text(req.memory_mib))
    if req.compute_percent is not None:
        args.append(f"{req.compute_percent}%")
    return f"{head}({','.join(args)})" if args else head


def _fraction_text(f: Decimal) -> str:
    text = f"{f.normalize():f}"
    return text if text.startswith("0") else "0" + text
