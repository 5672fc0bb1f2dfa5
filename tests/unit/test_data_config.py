"""The data service's place in the platform configuration."""

from __future__ import annotations

import pytest

from gemhub.hub_config.configurer import ConfigError, build_config, merge_platform

from config_inputs import INPUTS  # noqa: E402


def test_data_service_is_registered_with_its_limits():
    cfg = merge_platform({"services": {"data": {"max_batch_files": 10, "storage_allowance_gb": 0.5}}}, {})
    c = build_config(cfg, INPUTS)
    data = next(s for s in c["JupyterHub"]["services"] if s["name"] == "data")
    assert data["api_token"] == "dtok" and data["url"] == "http://127.0.0.1:9103"
    assert "--DataService.max_batch_files=10" in data["command"]
    assert "--DataService.storage_allowance_gb=0.5" in data["command"]
    assert data["environment"]["GEMHUB_DATABASE_URL"] == "sqlite:////state/db/data.sqlite"
    # the quota token travels in the environment, never on the command line (ps)
    assert data["environment"]["GEMHUB_QUOTA_TOKEN"] == "qtok"
    assert not any("qtok" in arg for arg in data["command"])
    user = next(r for r in c["JupyterHub"]["load_roles"] if r["name"] == "user")
    assert "access:services!service=data" in user["scopes"]
    assert c["LocalGemSpawner"]["data_url"] == "http://127.0.0.1:9103/services/data/"
    assert c["LocalGemSpawner"]["data_token"] == "dtok"


@pytest.mark.parametrize("bad", [{"storage_allowance_gb": -1}, {"storage_allowance_gb": "lots"},
                                 {"max_batch_files": 0}, {"max_file_bytes": "2G"}, {"chunk": 1}])
def test_bad_data_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        merge_platform({"services": {"data": bad}}, {})
