import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemhub.spawner.presets import Catalog, Preset, PresetError, UnknownPreset, format_memory, parse_memory

G = 1024**3


@pytest.mark.parametrize("text,expected", [
    ("2G", 2 * G), ("512M", 512 * 1024**2), ("1.5G", int(1.5 * G)), ("1024", 1024),
    ("4g", 4 * G), ("2GB", 2 * G), ("8Gi", 8 * G), ("1T", 1024**4), ("64K", 65536), (4096, 4096),
])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["", "G", "2X", "-1G", "0", "two gigs", "2 G B", None, True, 1.5, "1e3G", "inf", "0M"])
def test_parse_memory_rejects(bad):
    with pytest.raises(PresetError):
        parse_memory(bad)


@given(st.integers(min_value=1, max_value=2**40))
def test_format_roundtrip(n):
    assert parse_memory(format_memory(n)) == n


def test_preset_from_dict():
    p = Preset.from_dict({"name": "B1", "display_name": "B1 · basic", "cpu": 1, "memory": "2G",
                          "description": "dev"})
    assert p == Preset("B1", "B1 · basic", 1.0, 2 * G, "dev")
    assert Preset.from_dict({"name": "X", "cpu": 0.5, "memory": "512M"}).display_name == "X"


@pytest.mark.parametrize("d", [
    {"name": "B1", "cpu": 1, "memory": "2 gigs"},
    {"name": "B1", "cpu": 0, "memory": "2G"},
    {"name": "B1", "cpu": "1", "memory": "2G"},
    {"name": "B1", "cpu": True, "memory": "2G"},
    {"name": "", "cpu": 1, "memory": "2G"},
    {"name": "B1", "cpu": 1},
    {"name": "B1", "cpu": 1, "memory": "2G", "gpu": 1},
])
def test_preset_rejects(d):
    with pytest.raises(PresetError):
        Preset.from_dict(d)


def test_catalog():
    c = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "2G"},
                             {"name": "S1", "cpu": 2, "memory": "4G"}], "B1")
    assert c.get(None).name == "B1"
    assert c.get("S1").memory == 4 * G
    assert c.names() == ["B1", "S1"]
    with pytest.raises(UnknownPreset, match="B1, S1"):
        c.get("XL")
    with pytest.raises(PresetError):
        Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "2G"}], "S1")
    with pytest.raises(PresetError):
        Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "2G"}] * 2, "B1")
