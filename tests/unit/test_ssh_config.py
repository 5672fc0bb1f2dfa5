"""The ssh service's registration in the hub configuration (gemhub.yaml services.ssh)."""

from __future__ import annotations

import pytest

from gemhub.hub_config.configurer import ConfigError, build_config, merge_platform

from config_inputs import INPUTS  # noqa: E402


def ssh_parts(user_cfg: dict):
    out = build_config(merge_platform(user_cfg, {}), INPUTS)["JupyterHub"]
    service = next(s for s in out["services"] if s["name"] == "ssh")
    roles = {r["name"]: r for r in out["load_roles"]}
    return service, roles, out["template_vars"]["gemhub_ssh"]


def test_ssh_service_is_registered_with_minimal_scopes():
    service, roles, shown = ssh_parts({})
    assert service["api_token"] == "stok" and service["display"] is True
    assert service["url"] == "http://127.0.0.1:9102"
    assert "--SSHService.ssh_port=2222" in service["command"]
    assert "--SSHService.ssh_host=127.0.0.1" in service["command"]
    assert "--SSHService.hub_url=http://127.0.0.1:8000/" in service["command"]
    assert roles["gemhub-ssh"]["scopes"] == ["read:users:name", "read:servers", "users:activity",
                                            "access:services!service=data"]
    assert "access:services!service=ssh" in roles["user"]["scopes"]
    # SFTP into drafts: the gateway asks the data service, which shows the ready command
    assert service["environment"] == {"GEMHUB_DATA_URL": "http://127.0.0.1:9103/services/data/",
                                      "GEMHUB_DATABASE_URL": "sqlite:////state/db/ssh.sqlite"}
    cfg = merge_platform({"services": {"ssh": {"port": 2022, "public_host": "gpu.example"}}}, {})
    data = next(s for s in build_config(cfg, INPUTS)["JupyterHub"]["services"] if s["name"] == "data")
    assert "--DataService.sftp_port=2022" in data["command"]
    assert "--DataService.sftp_host=gpu.example" in data["command"]
    assert "access:services!service=quota" in roles["user"]["scopes"]
    assert shown == {"port": 2222, "host": "", "page": "/services/ssh/"}


def test_start_stopped_grants_starting_servers_only_then():
    service, roles, _ = ssh_parts({"services": {"ssh": {"start_stopped": True, "port": 22,
                                                        "public_host": "gem.example.com"}}})
    assert "servers" in roles["gemhub-ssh"]["scopes"]
    assert "--SSHService.start_stopped=True" in service["command"]
    assert "--SSHService.public_host=gem.example.com" in service["command"]
    assert "--SSHService.hub_url=http://gem.example.com:8000/" in service["command"]


@pytest.mark.parametrize("bad,needle", [
    ({"port": 70000}, "services.ssh.port"), ({"port": "22"}, "whole number"),
    ({"max_failures": 0}, "max_failures"), ({"start_stopped": "yes"}, "true or false"),
    ({"bogus": 1}, "services.ssh.bogus"),
])
def test_bad_ssh_settings_are_config_errors(bad, needle):
    with pytest.raises(ConfigError, match=needle):
        merge_platform({"services": {"ssh": bad}}, {})
