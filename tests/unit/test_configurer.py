from pathlib import Path

import pytest
import yaml

from gemhub.hub_config import configurer
from gemhub.hub_config.configurer import ConfigError, Inputs, build_config, merge_platform

EXAMPLE = Path(__file__).resolve().parents[2] / "hub_config" / "gemhub.example.yaml"

from config_inputs import INPUTS  # noqa: E402


def test_example_file_is_exactly_the_defaults():
    assert merge_platform(yaml.safe_load(EXAMPLE.read_text()), {}) == merge_platform({}, {})


def test_defaults_give_local_spawner_and_native_auth():
    c = build_config(merge_platform({}, {}), INPUTS)
    assert c["JupyterHub"]["port"] == 8000
    assert c["JupyterHub"]["spawner_class"].endswith("LocalGemSpawner")
    assert c["JupyterHub"]["authenticator_class"].endswith("GemAuthenticator")
    assert c["JupyterHub"]["db_url"] == "sqlite:////state/db/jupyterhub.sqlite"
    assert c["GemAuthenticator"]["admin_password"] == "pw"
    assert c["Authenticator"]["admin_users"] == {"admin"}
    assert c["LocalGemSpawner"]["quota_url"] == "http://127.0.0.1:9101/services/quota/"
    quota = c["JupyterHub"]["services"][0]
    assert quota["name"] == "quota" and quota["api_token"] == "qtok"
    # the database URL (which may hold a password) travels in the environment, never on argv
    assert quota["environment"]["GEMHUB_DATABASE_URL"] == "sqlite:////state/db/quota.sqlite"
    assert not any("db_url" in arg or "sqlite" in arg for arg in quota["command"])
    assert "api_tokens" not in c["JupyterHub"]
    # SQLite: WAL mode through the plugin (nothing to survive a database restart)
    assert c["JupyterHub"]["db_kwargs"] == {"plugins": ["gemhub_db"]}


def test_environment_overrides():
    cfg = merge_platform({"hub": {"port": 9000}}, {"GEMHUB_PORT": "8123", "GEMHUB_STATE_DIR": "/x"})
    assert cfg["hub"]["port"] == 8123 and cfg["state_dir"] == "/x"
    with pytest.raises(ConfigError, match="GEMHUB_PORT"):
        merge_platform({}, {"GEMHUB_PORT": "eighty"})


def test_ssh_port_from_the_environment():
    cfg = merge_platform({"services": {"ssh": {"port": 2300}}}, {"GEMHUB_SSH_PORT": "2422"})
    assert cfg["services"]["ssh"]["port"] == 2422
    assert merge_platform({"services": {"ssh": {"port": 2300}}}, {})["services"]["ssh"]["port"] == 2300
    for bad in ("ssh", "70000", "-1", "22.5"):
        with pytest.raises(ConfigError, match="GEMHUB_SSH_PORT"):
            merge_platform({}, {"GEMHUB_SSH_PORT": bad})


def test_services_get_secrets_in_their_environment_only():
    url = "postgresql://gem:s3cret-pw@db.example:5432/gemhub"
    cfg = merge_platform({"database_url": url, "services": {
        name: {"database_url": url.replace("gemhub", name)} for name in ("quota", "data", "ssh")}}, {})
    c = build_config(cfg, INPUTS)
    for service in c["JupyterHub"]["services"]:
        assert not any("s3cret" in arg or "qtok" in arg or "dtok" in arg for arg in service["command"]), service
        if service["name"] in ("quota", "data", "ssh"):
            assert service["environment"]["GEMHUB_DATABASE_URL"].endswith(f"/{service['name']}")
    # the hub's own PostgreSQL engine survives a restart of the server
    assert c["JupyterHub"]["db_kwargs"] == {"pool_pre_ping": True, "plugins": ["gemhub_db"]}
    assert callable(c["JupyterHub"]["tornado_settings"]["log_function"])


def test_admin_token_becomes_an_admin_api_token():
    inputs = Inputs(**{**INPUTS.__dict__, "admin_token": "T"})
    assert build_config(merge_platform({}, {}), inputs)["JupyterHub"]["api_tokens"] == {"T": "admin"}


@pytest.mark.parametrize(
    "user, message",
    [
        ({"hub": {"prot": 1}}, "unknown key 'hub.prot'"),
        ({"hub": {"port": "8000"}}, "hub.port must be a whole number"),
        ({"hub": {"port": 70000}}, "between 1 and 65535"),
        ({"auth": {"open_signup": "yes"}}, "auth.open_signup must be true or false"),
        ({"spawner": {"cgroups": "sometimes"}}, "spawner.cgroups"),
        ({"spawner": {"default_preset": "X9"}}, "not one of the presets"),
        ({"presets": [{"name": "A"}, {"name": "A"}], "spawner": {"default_preset": "A"}}, "unique"),
        ({"spawner": {"runtime": "docker"}}, "spawner.runtime 'docker' is not one of"),
        ({"hub": []}, "hub must be a mapping"),
        ({"spawner": {"named_servers_per_user": -1}}, "spawner.named_servers_per_user must be between 0"),
        ({"spawner": {"named_servers_per_user": 101}}, "spawner.named_servers_per_user must be between 0"),
        ({"spawner": {"named_servers_per_user": "3"}}, "spawner.named_servers_per_user must be a whole number"),
    ],
)
def test_bad_platform_files_are_refused_with_the_key(user, message):
    with pytest.raises(ConfigError, match=message):
        merge_platform(user, {})


def test_named_servers_default_to_three_and_zero_turns_them_off():
    hub = build_config(merge_platform({}, {}), INPUTS)["JupyterHub"]
    assert (hub["allow_named_servers"], hub["named_server_limit_per_user"]) == (True, 3)
    hub = build_config(merge_platform({"spawner": {"named_servers_per_user": 0}}, {}), INPUTS)["JupyterHub"]
    assert hub["allow_named_servers"] is False


def test_oauth_selects_the_oauthenticator_class():
    cfg = merge_platform(
        {"auth": {"type": "github", "oauth": {"client_id": "id", "client_secret": "s",
                                              "callback_url": "http://h/hub/oauth_callback",
                                              "allow_all": True}}}, {})
    c = build_config(cfg, INPUTS)
    assert c["JupyterHub"]["authenticator_class"] == "oauthenticator.github.GitHubOAuthenticator"
    assert "GemAuthenticator" not in c


def test_configuration_is_not_mutated():
    cfg = merge_platform({}, {})
    before = yaml.safe_dump(cfg)
    build_config(cfg, INPUTS)
    assert yaml.safe_dump(cfg) == before
    assert configurer.DEFAULTS["hub"]["port"] == 8000
