"""The platform file's accelerators block and presets: validated at load, handed to the
spawner, the quota service (its ledger places devices) and the hub's device pages."""

from __future__ import annotations

import json

import pytest

from gemhub.hub_config.configurer import ConfigError, build_config, merge_platform

from config_inputs import INPUTS  # noqa: E402


def test_defaults_reach_spawner_quota_and_device_pages():
    cfg = merge_platform({}, {})
    c = build_config(cfg, INPUTS)
    acc = c["LocalGemSpawner"]["accelerators"]
    assert acc["inventory"] == "auto" and acc["policy"] == "binpack"
    assert {e["model"] for e in acc["simulated"]} == {"A100-80G", "RTX4090", "910B"}
    quota = c["JupyterHub"]["services"][0]
    assert quota["name"] == "quota"
    platform = json.loads(quota["environment"]["GEMHUB_QUOTA_PLATFORM"])
    assert [p["name"] for p in platform["presets"]] == [p["name"] for p in cfg["presets"]]
    assert platform["accelerators"] == acc and platform["runtime"] == "local"
    assert not any("QuotaService.platform" in a for a in quota["command"])  # environment, not argv
    handlers = {h[0]: h for h in c["JupyterHub"]["extra_handlers"]}
    console = r"/gemhub/admin/?(?:([^/]+)(?:/(.*))?)?"
    assert set(handlers) == {console, r"/gemhub/devices", r"/api/gemhub/devices", r"/api/gemhub/metrics"}
    assert handlers[r"/gemhub/devices"][1] == "gemhub.hub_config.devices.DevicesPage"
    assert handlers[r"/gemhub/devices"][2] == {"state_dir": "/state", "accelerators": acc}
    assert handlers[console][1] == "gemhub.hub_config.console.handlers.ConsolePage"
    assert handlers[console][2] == {"state_dir": "/state", "accelerators": acc, "presets": cfg["presets"],
                                    "default_preset": "B1", "runtime": "local"}


def test_vendor_overrides_are_free_form_and_reach_preset_parsing():
    cfg = merge_platform({
        "accelerators": {"vendors": {"nvidia": {"models": {"ZX-1": {"memory_mib": 16384}}}},
                         "simulated": [{"model": "ZX-1", "count": 1}]},
        "presets": [{"name": "B1", "cpu": 1, "memory": "1G", "accelerator": "1(ZX-1)"}],
    }, {})
    assert cfg["presets"][0]["accelerator"] == "1(ZX-1)"


@pytest.mark.parametrize("user, message", [
    ({"accelerators": {"inventory": "cuda"}}, "accelerators.inventory must be one of auto, nvml, simulated, none"),
    ({"accelerators": {"policy": "random"}}, "accelerators.policy must be one of binpack, spread"),
    ({"accelerators": {"kubernetes_profile": "x"}}, "accelerators.kubernetes_profile"),
    ({"accelerators": {"gpus": 2}}, "unknown key 'accelerators.gpus'"),
    ({"accelerators": {"simulated": [{"model": "A100-80G", "count": "two"}]}}, "accelerators: simulated"),
    ({"accelerators": {"simulated": [{"model": "Z9000"}]}}, "Z9000"),
    ({"presets": [{"name": "B1", "cpu": 1, "memory": "1G", "accelerator": "2(Z9000)"}]},
     "presets: preset 'B1': accelerator spec '2(Z9000)'"),
    ({"presets": [{"name": "B1", "cpu": 1, "memory": "1G", "price_per_hour": 1.5}]}, "price_per_hour"),
    ({"presets": [{"name": "B1", "cpu": 1, "memory": "1G", "use": "mining"}]}, "use must be one of"),
])
def test_bad_accelerator_config_is_an_error_that_says_where(user, message):
    with pytest.raises(ConfigError) as e:
        merge_platform(user, {})
    assert message in str(e.value)
