"""gemhub.yaml's services.quota scheduling settings and kueue block: validated at load,
handed to the quota service in its environment and to the spawners (queue timeout)."""

from __future__ import annotations

import json

import pytest

from gemhub.hub_config.configurer import ConfigError, build_config, merge_platform
from gemhub.services.quota.ledger_config import LedgerConfig

from config_inputs import INPUTS  # noqa: E402


def quota_entry(c: dict) -> dict:
    return next(s for s in c["JupyterHub"]["services"] if s["name"] == "quota")


def test_settings_reach_the_quota_service_and_the_spawner():
    cfg = merge_platform({"services": {"quota": {"reconcile_seconds": 10, "preemptible_kinds": ["job", "notebook"],
                                                 "borrow_threshold": 0.3, "queue_timeout": 600,
                                                 "priority_levels": {"batch": -10, "normal": 100}}}}, {})
    c = build_config(cfg, INPUTS)
    platform = json.loads(quota_entry(c)["environment"]["GEMHUB_QUOTA_PLATFORM"])
    ledger = LedgerConfig.from_json(platform)
    assert ledger.reconcile_seconds == 10 and ledger.preemptible_kinds == {"job", "notebook"}
    assert str(ledger.borrow_threshold) == "0.3" and ledger.priority_levels == {"batch": -10, "normal": 100}
    assert [p.name for p in ledger.catalog.presets] == [p["name"] for p in cfg["presets"]]
    assert c["LocalGemSpawner"]["queue_timeout"] == 600
    role = next(r for r in c["JupyterHub"]["load_roles"] if r["name"] == "gemhub-quota")
    assert "servers" in role["scopes"]  # preempted notebooks (and removed members) are stopped


def test_kueue_on_the_kubernetes_runtime():
    cfg = merge_platform({"spawner": {"runtime": "kubernetes"}, "kueue": {"enabled": True},
                          "kubernetes": {"namespace": "gemhub"}}, {})
    c = build_config(cfg, INPUTS)
    ledger = LedgerConfig.from_json(json.loads(quota_entry(c)["environment"]["GEMHUB_QUOTA_PLATFORM"]))
    assert ledger.kueue_enabled and ledger.namespace == "gemhub" and ledger.devices() == []
    assert c["KubeGemSpawner"]["queue_timeout"] == 86400


@pytest.mark.parametrize("user, message", [
    ({"services": {"quota": {"preemptible_kinds": ["vm"]}}}, "preemptible_kinds: 'vm'"),
    ({"services": {"quota": {"borrow_threshold": -0.1}}}, "borrow_threshold"),
    ({"services": {"quota": {"borrow_threshold": "20%"}}}, "borrow_threshold"),
    ({"services": {"quota": {"reconcile_seconds": 0}}}, "reconcile_seconds must be at least 1"),
    ({"services": {"quota": {"priority_levels": {"a": 1, "b": 1}}}}, "same value"),
    ({"services": {"quota": {"priority_levels": {"a": "high"}}}}, "whole numbers"),
    ({"services": {"quota": {"default_priority": 300}}}, "default_priority must not be above max_priority"),
    ({"services": {"quota": {"gpus": 1}}}, "unknown key 'services.quota.gpus'"),
    ({"kueue": {"enabled": True}}, "kueue.enabled needs spawner.runtime: kubernetes"),
    ({"kueue": {"enabled": "yes"}}, "kueue.enabled must be true or false"),
])
def test_bad_settings_are_refused_at_load(user, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge_platform(user, {})


def test_the_charts_quota_service_reads_the_hubs_gemhub_yaml(tmp_path, monkeypatch):
    """On Kubernetes the quota service derives the same platform JSON from the gemhub.yaml
    the chart mounts (the hub's own), instead of its environment."""
    from gemhub.hub_config import services
    from gemhub.services.quota.app import QuotaService

    monkeypatch.delenv("GEMHUB_QUOTA_PLATFORM", raising=False)
    user = {"spawner": {"runtime": "kubernetes", "default_preset": "S1"}, "kueue": {"enabled": True}}
    (tmp_path / "gemhub.yaml").write_text(json.dumps(user))  # JSON is YAML
    app = QuotaService(state_dir=str(tmp_path), platform_file=str(tmp_path / "gemhub.yaml"))
    assert app.platform == json.loads(json.dumps(services.quota_platform(merge_platform(user, {}))))
    assert app.platform["runtime"] == "kubernetes" and app.platform["kueue"]["enabled"] is True
    assert app.preset_names == [p["name"] for p in merge_platform(user, {})["presets"]]
