"""The spawn form's accelerator parts: preset details, disabled presets, workspace limits,
the custom spec field, and the submitted spec."""

from __future__ import annotations

import json
import re

import pytest

from gemhub.spawner.form import options_from_form, render_form
from gemhub.spawner.presets import Catalog
from gemhub.spawner.request import RequestError, parse_options

CAT = Catalog.from_config([
    {"name": "B1", "cpu": 1, "memory": "2G", "price_per_hour": "0.50"},
    {"name": "S2", "cpu": 4, "memory": "16G", "accelerator": "0.5(A100-80G)", "use": "training",
     "price_per_hour": "6"},
    {"name": "P9", "cpu": 8, "memory": "32G", "accelerator": "8(H100-80G)", "use": "training",
     "price_per_hour": "99.5"},
], "B1")
WS = [
    {"id": 1, "name": "alice", "personal": True, "projects": [{"id": 1, "name": "default"}],
     "allowed_presets": None, "custom_spec": False},
    {"id": 5, "name": "team</script>", "personal": False, "projects": [{"id": 7, "name": "default"}],
     "allowed_presets": ["B1"], "custom_spec": True},
]
LABELS = {"B1": "no accelerator", "S2": "0.5 of one A100-80G (40 GiB memory cap) · simulated",
          "P9": "8 × H100-80G (80 GiB each) · simulated"}


def _preset_line(html: str, name: str) -> str:
    return re.search(rf'<div class="form-check"><input[^>]*value="{name}".*?</div>', html).group(0)


def test_presets_show_device_memory_price_and_use():
    html = render_form(WS, CAT, accelerator_labels=LABELS, never_fits={"P9": "only 2 A100-80G here"})
    s2 = _preset_line(html, "S2")
    assert "A100-80G (40 GiB memory cap) · simulated" in s2
    assert "6.00 points/hour" in s2 and "training" in s2 and "16G memory" in s2
    assert "disabled" not in s2.split(">")[0]
    p9 = _preset_line(html, "P9")
    assert re.search(r'<input[^>]*value="P9"[^>]*disabled data-never="1"', p9)
    assert "unavailable: only 2 A100-80G here" in p9 and "99.50 points/hour" in p9
    assert "0.50 points/hour" in _preset_line(html, "B1")


def test_workspace_limits_are_embedded_safely_and_custom_spec_hidden_by_default():
    html = render_form(WS, CAT)
    data = re.search(r'<script type="application/json" id="gemhub-workspace-limits" data-admin="0">(.*?)</script>',
                     html, re.S).group(1)
    assert json.loads(data) == {"1": {"allowed_presets": None, "custom_spec": False},
                                "5": {"allowed_presets": ["B1"], "custom_spec": True}}
    assert 'data-name="team&lt;/script&gt;"' in html and "team</script>" not in html
    assert '<div class="form-group mb-3" id="gemhub-custom-spec" hidden>' in html
    assert 'name="accelerator"' in html  # present for the workspace that allows it (shown by script)


def test_custom_spec_shown_for_admins_and_allowed_workspaces_with_previous_value():
    html = render_form(WS, CAT, {"accelerator": '1("x")'}, is_admin=True)
    assert '<div class="form-group mb-3" id="gemhub-custom-spec">' in html
    assert 'data-admin="1"' in html and 'value="1(&quot;x&quot;)"' in html
    html = render_form(WS, CAT, {"workspace_id": 5})
    assert '<div class="form-group mb-3" id="gemhub-custom-spec">' in html


def test_submitted_custom_spec():
    assert options_from_form({"preset": ["B1"], "accelerator": [" 0.5(A100-80G) "]}) == {
        "preset": "B1", "accelerator": "0.5(A100-80G)"}
    assert options_from_form({"preset": ["B1"], "accelerator": [""]}) == {"preset": "B1"}
    with pytest.raises(RequestError):
        options_from_form({"accelerator": ["1", "2"]})


@pytest.mark.parametrize("value,ok", [("0.5(A100-80G)", True), (2, True), ("", True),
                                      (True, False), (0.5, False), (["1"], False), ("1" * 201, False)])
def test_rest_accelerator_option_types(value, ok):
    if ok:
        parsed = parse_options({"accelerator": value}, CAT)
        assert parsed.accelerator == (str(value).strip() or None)
    else:
        with pytest.raises(RequestError, match="accelerator"):
            parse_options({"accelerator": value}, CAT)
