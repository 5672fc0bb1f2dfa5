"""Presets with accelerators: spec parsed at load, tier from the name, use, Decimal price,
and the workspace limits the spawner enforces."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemhub.spawner.accelerators import default_registry, parse
from gemhub.spawner.presets import (
    Catalog,
    Preset,
    PresetError,
    check_workspace_limits,
    choose_accelerator,
    parse_price,
    tier_of,
)

BASE = {"name": "S2", "cpu": 4, "memory": "16G"}


def test_accelerator_use_price_and_tier():
    p = Preset.from_dict({**BASE, "accelerator": " 0.5（A100-80G） ", "use": "training",
                          "price_per_hour": "6.00"})
    assert p.accelerator == "0.5(A100-80G)"  # canonical text
    assert p.request.kind == "fraction" and p.request.model == "A100-80G"
    assert p.request.fraction == Decimal("0.5")
    assert p.use == "training" and p.tier == "standard"
    assert p.price_per_hour == Decimal("6.00") and isinstance(p.price_per_hour, Decimal)


def test_defaults_are_no_accelerator_development_free():
    p = Preset.from_dict(BASE)
    assert p.accelerator == "0" and p.request.none and p.use == "development"
    assert p.price_per_hour == Decimal(0)


@pytest.mark.parametrize("name,tier", [("B1", "basic"), ("S2", "standard"), ("P10", "premium"),
                                       ("X", None), ("B", None), ("b1", None), ("P1x", None)])
def test_tier_from_name(name, tier):
    assert tier_of(name) == tier


@pytest.mark.parametrize("spec,needle", [
    ("2(Z9000)", "Z9000"), ("1.5", "accelerator spec"), ("abc", "accelerator spec"), ("-1", "accelerator spec"),
])
def test_bad_spec_is_a_preset_error_naming_the_preset(spec, needle):
    with pytest.raises(PresetError, match="preset 'S2'") as e:
        Preset.from_dict({**BASE, "accelerator": spec})
    assert needle in str(e.value)


@pytest.mark.parametrize("bad", [1.5, True, "one", "-1", "NaN", "Infinity", None, [1]])
def test_price_must_be_exact_and_not_negative(bad):
    with pytest.raises(PresetError, match="price_per_hour"):
        parse_price(bad)


@given(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False))
def test_price_text_roundtrips_exactly(d):
    assert parse_price(str(d)) == d


def test_use_and_accelerator_types_are_checked():
    with pytest.raises(PresetError, match="use must be one of"):
        Preset.from_dict({**BASE, "use": "gaming"})
    with pytest.raises(PresetError, match="accelerator must be a spec"):
        Preset.from_dict({**BASE, "accelerator": 0.5})


def test_registry_overrides_reach_the_presets():
    with pytest.raises(PresetError):
        Preset.from_dict({**BASE, "accelerator": "1(ZX-1)"})
    registry = default_registry().with_overrides(
        {"nvidia": {"models": {"ZX-1": {"memory_mib": 16384}}}})
    assert Preset.from_dict({**BASE, "accelerator": "1(ZX-1)"}, registry).request.model == "ZX-1"
    cat = Catalog.from_config([{**BASE, "accelerator": "1(ZX-1)"}], "S2", registry)
    assert cat.get("S2").accelerator == "1(ZX-1)"


def test_shipped_default_presets_parse():
    from gemhub.hub_config.configurer import DEFAULTS

    cat = Catalog.from_config(DEFAULTS["presets"], DEFAULTS["spawner"]["default_preset"])
    assert cat.default == "B1" and {"B1", "S1", "P1"} <= set(cat.names())
    assert cat.get("B1").request.none and cat.get("P1").request.kind == "whole"
    assert any(p.request.vendor == "ascend" for p in cat.presets)
    assert all(p.tier for p in cat.presets)


WS = {"name": "team", "allowed_presets": ["B1", "S1"], "custom_spec": False}


def test_workspace_limits():
    b1, p1 = Preset.from_dict({"name": "B1", "cpu": 1, "memory": "2G"}), Preset.from_dict(
        {"name": "P1", "cpu": 1, "memory": "2G", "accelerator": "1"})
    check_workspace_limits(b1, None, WS, is_admin=False)
    with pytest.raises(PresetError, match="may not use preset 'P1' .allowed: B1, S1."):
        check_workspace_limits(p1, None, WS, is_admin=False)
    with pytest.raises(PresetError, match="may not use preset 'P1'"):  # binds admins too
        check_workspace_limits(p1, None, WS, is_admin=True)
    with pytest.raises(PresetError, match="custom accelerator spec"):
        check_workspace_limits(b1, "0.5", WS, is_admin=False)
    check_workspace_limits(b1, "0.5", WS, is_admin=True)
    check_workspace_limits(b1, "0.5", {**WS, "custom_spec": True}, is_admin=False)
    check_workspace_limits(p1, None, {"name": "free", "allowed_presets": None}, is_admin=False)
    with pytest.raises(PresetError, match="allowed: none"):
        check_workspace_limits(b1, None, {"name": "shut", "allowed_presets": []}, is_admin=False)


def test_choose_accelerator_for_any_runtime():
    s2 = Preset.from_dict({**BASE, "accelerator": "0.5(A100-80G)"})
    free = {"name": "w", "allowed_presets": None, "custom_spec": True}
    assert choose_accelerator(s2, None, free, False, parse) is s2.request
    assert choose_accelerator(s2, "1(910B)", free, False, parse).vendor == "ascend"
    with pytest.raises(PresetError, match="custom accelerator spec"):
        choose_accelerator(s2, "1", {**free, "custom_spec": False}, False, parse)
