"""The accelerator spec grammar: every cube-studio form, precise errors, round trips."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemhub.spawner.accelerators import AcceleratorRequest, SpecError, default_registry, format, parse

REG = default_registry()


@pytest.mark.parametrize("text, kind, fields", [
    ("0", "none", {}),
    ("", "none", {}),
    ("   ", "none", {}),
    ("1", "whole", {"count": 1, "vendor": None}),
    ("2(V100)", "whole", {"count": 2, "vendor": "nvidia", "model": "V100"}),
    ("0.5", "fraction", {"count": 1, "fraction": Decimal("0.5")}),
    ("0.5(vgpu)", "fraction", {"fraction": Decimal("0.5")}),
    ("8G,0.5", "fraction", {"fraction": Decimal("0.5"), "memory_mib": 8192}),
    ("1(npu,910B)", "whole", {"vendor": "ascend", "model": "910B"}),
    ("8(Ascend910B)", "whole", {"count": 8, "vendor": "ascend", "model": "910B"}),
    ("1(Ascend910-4c)", "vnpu", {"vnpu_template": "Ascend910-4c", "model": "910"}),
    ("1(Ascend310P-2c)", "vnpu", {"vnpu_template": "Ascend310P-2c", "model": "310P"}),
    ("1(mig-1g.10gb)", "mig", {"mig_profile": "1g.10gb", "vendor": "nvidia"}),
    ("1(A30,mig-2g.12gb)", "mig", {"mig_profile": "2g.12gb", "model": "A30"}),
    ("1(vgpu,10G,30%)", "fraction", {"memory_mib": 10240, "compute_percent": 30, "fraction": None}),
    ("0.25(A100)", "fraction", {"fraction": Decimal("0.25"), "model": "A100"}),
    ("8(A100-80G)", "whole", {"count": 8, "model": "A100-80G"}),
    ("1（V100）", "whole", {"model": "V100"}),
    ("1（npu，910B）", "whole", {"model": "910B"}),
    ("  2 ( A100-80G )  ", "whole", {"count": 2, "model": "A100-80G"}),
    ("1(mlu)", "whole", {"vendor": "cambricon", "model": None}),
    ("0.5(dcu,Z100)", "fraction", {"vendor": "hygon"}),
    ("1(a100-80gb)", "whole", {"model": "A100-80G"}),
])
def test_accepts_cube_studio_forms(text, kind, fields):
    req = parse(text)
    assert req.kind == kind
    for k, v in fields.items():
        assert getattr(req, k) == v, k
    assert parse(format(req)) == req


@pytest.mark.parametrize("text, column, fragment", [
    ("-1", 1, "negative"),
    ("1(-2)", 3, "unknown"),
    ("0(V100)", 3, "0 means no accelerator"),
    ("1.5", 1, "not a share of one device"),
    ("1.0", 1, "not a share of one device"),
    ("0.333", 1, "two decimal places"),
    ("2(0.5)", 3, "unknown"),
    ("2(mig-1g.10gb)", 1, "one slice"),
    ("1(V1OO)", 3, "unknown 'V1OO'"),
    ("1(tpu)", 3, "unknown 'tpu'"),
    ("1(mig-9g.99gb)", 3, "does not exist"),
    ("1(T4,mig-1g.10gb)", 6, "does not exist on the T4"),
    ("1(Ascend910-3c)", 3, "unknown"),
    ("0.5(V100-16G,20G)", 14, "more than the largest matching device"),
    ("1(vgpu,200G)", 8, "more than the largest"),
    ("1(vgpu,10G,130%)", 12, "out of range"),
    ("abc", 1, "found 'abc'"),
    ("1(V100", 7, "not closed"),
    ("1(V100)x", 8, "found 'x'"),
    ("1(vgpu)", 3, "needs a size"),
    ("2(vgpu,10G)", 8, "one device"),
    ("1(npu,V100)", 7, "already chose Huawei Ascend"),
    ("1(V100,T4)", 8, "second model"),
    ("1,2", 3, "second count"),
    ("100", 1, "more than any node"),
    ("1(mig-1g.10gb,10G)", 15, "fixes memory"),
    ("1(Ascend910-4c,2G)", None, "fixes memory"),
    ("1()", 3, "found ')'"),
    ("8G", None, "no device count"),
])
def test_rejects_with_position(text, column, fragment):
    with pytest.raises(SpecError) as info:
        parse(text)
    err = info.value
    assert fragment in str(err)
    assert err.expected
    if column is not None:
        assert err.position == column - 1
        assert f"column {column}" in str(err)


def test_never_returns_none_for_typos():
    for text in ["O", "o.5", "1 (V100", "zero", "1(gpu", "1(v100,)", "nan", "1e3"]:
        with pytest.raises(SpecError):
            parse(text)


def test_rejects_non_text():
    with pytest.raises(SpecError):
        parse(None)  # type: ignore[arg-type]


def test_inventory_models_restrict_and_extend():
    assert parse("1(A100)", inventory_models=["A100-80G"]).model == "A100"
    with pytest.raises(SpecError, match="no V100 devices"):
        parse("2(V100)", inventory_models=["A100-80G"])
    with pytest.raises(SpecError, match="does not exist on any model here"):
        parse("1(mig-1g.10gb)", inventory_models=["V100-32G"])
    # A model only the inventory knows is accepted as itself (no vendor is implied).
    req = parse("1(MyCustomGPU)", inventory_models=["MyCustomGPU"])
    assert (req.model, req.vendor) == ("MyCustomGPU", None)
    assert parse("1(MyCustomGPU,vgpu,10G)", inventory_models=["MyCustomGPU"]).memory_mib == 10240
    with pytest.raises(SpecError, match="does not exist on the MyCustomGPU"):
        parse("1(MyCustomGPU,mig-1g.10gb)", inventory_models=["MyCustomGPU"])


def test_to_json_is_plain():
    data = parse("0.5(A100-80G)").to_json()
    assert data == {"spec": "0.5(A100-80G)", "kind": "fraction", "vendor": "nvidia",
                    "model": "A100-80G", "count": 1, "fraction": "0.5", "memory_mib": None,
                    "compute_percent": None, "mig_profile": None, "vnpu_template": None}


# -- round trips ----------------------------------------------------------------------------
MODELS = sorted(m.name for m in REG.all_models())
MIG = sorted((m.name, p) for m in REG.all_models() for p in m.mig_profiles)
TEMPLATES = sorted((m.name, t) for m in REG.all_models() for t in m.vnpu_templates)


@st.composite
def requests(draw) -> AcceleratorRequest:
    kind = draw(st.sampled_from(["none", "whole", "fraction", "mig", "vnpu"]))
    if kind == "none":
        return AcceleratorRequest()
    if kind == "mig":
        model, prof = draw(st.sampled_from(MIG))
        model = draw(st.sampled_from([model, None]))
        return AcceleratorRequest(vendor="nvidia", model=model, count=1, mig_profile=prof)
    if kind == "vnpu":
        model, tmpl = draw(st.sampled_from(TEMPLATES))
        return AcceleratorRequest(vendor="ascend", model=model, count=1, vnpu_template=tmpl)
    model = draw(st.one_of(st.none(), st.sampled_from(MODELS)))
    vendor = REG.model(model)[0].key if model else draw(st.one_of(st.none(), st.sampled_from(sorted(REG.vendors))))
    if kind == "whole":
        return AcceleratorRequest(vendor=vendor, model=model, count=draw(st.integers(1, 64)))
    fraction = draw(st.one_of(st.none(), st.integers(1, 99).map(lambda p: (Decimal(p) / 100).normalize())))
    limit = REG.model(model)[1].memory_mib if model else 16384
    memory = draw(st.one_of(st.none(), st.integers(1, limit)))
    compute = draw(st.one_of(st.none(), st.integers(1, 100)))
    if fraction is None and memory is None and compute is None:
        compute = 50
    return AcceleratorRequest(vendor=vendor, model=model, count=1, fraction=fraction,
                              memory_mib=memory, compute_percent=compute)


@settings(max_examples=300, deadline=None)
@given(requests())
def test_parse_format_round_trip(req):
    assert parse(format(req)) == req


SPEC_ALPHABET = st.sampled_from(list("0123456789.,()%GMgm- （），") + ["V100", "A100", "vgpu", "npu",
                                                                    "910B", "mig-1g.10gb", "A100-80G"])


@settings(max_examples=500, deadline=None)
@given(st.lists(SPEC_ALPHABET, max_size=8).map("".join))
def test_format_of_parse_is_stable_or_a_spec_error(text):
    try:
        req = parse(text)
    except SpecError as e:
        assert e.position is None or 0 <= e.position <= len(text)
        return
    canonical = format(req)
    assert format(parse(canonical)) == canonical
    assert parse(canonical) == req
