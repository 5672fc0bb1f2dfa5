"""gemhub.hub_config.chart: GemHub's part of the hub configuration inside z2jh's hub pod."""

from __future__ import annotations

import pytest
import yaml
from traitlets.config import Config

from gemhub.hub_config import chart, configurer


def platform(**over):
    user = {"spawner": {"runtime": "kubernetes"}, "accelerators": {"kubernetes_profile": "hami"},
            "kubernetes": {"storage_claim": "ws", "datasets_claim": "ds", "storage_sub_path": "gemhub"}}
    user.update(over)
    return configurer.merge_platform(user, {})


URLS = {"quota": "http://gemhub-quota:8181", "data": "http://gemhub-data:8182", "ssh": "http://gemhub-ssh:8183"}
TOKENS = {"quota": "tq", "data": "td", "ssh": "ts"}


def test_spawner_services_and_roles_for_the_chart():
    out = chart.build_config(platform(), chart.ChartInputs(URLS, TOKENS, admin_password="pw", python="/py"))
    jh = out["JupyterHub"]
    assert jh["spawner_class"] == "gemhub.spawner.kube.spawner.KubeGemSpawner"
    kube = out["KubeGemSpawner"]
    assert kube["quota_url"] == "http://gemhub-quota:8181/services/quota/" and kube["quota_token"] == "tq"
    assert kube["data_url"] == "http://gemhub-data:8182/services/data/" and kube["data_token"] == "td"
    assert (kube["storage_claim"], kube["datasets_claim"], kube["storage_sub_path"]) == ("ws", "ds", "gemhub")
    assert kube["accelerator_profile"] == "hami" and "image" not in kube  # z2jh's singleuser.image
    entries = {s["name"]: s for s in jh["services"]}
    assert entries["quota"] == {"name": "quota", "url": URLS["quota"], "display": True, "oauth_no_confirm": True}
    assert "api_token" not in entries["quota"]  # the token is z2jh's (its Secret)
    assert entries["idle-culler"]["command"][:3] == ["/py", "-m", "gemhub.lab.culling"]
    roles = {r["name"]: r for r in jh["load_roles"]}
    assert set(roles["user"]["scopes"]) == {"self"} | {f"access:services!service={n}" for n in URLS}
    assert roles["gemhub-ssh"]["services"] == ["ssh"] and "servers" not in roles["gemhub-ssh"]["scopes"]
    assert jh["template_vars"]["gemhub_ssh"]["page"] == "/services/ssh/"
    assert out["GemAuthenticator"]["admin_password"] == "pw"


def test_a_service_without_a_token_is_refused_with_the_values_key():
    with pytest.raises(configurer.ConfigError, match="jupyterhub.hub.services"):
        chart.build_config(platform(), chart.ChartInputs(URLS, {"quota": "tq"}, admin_password="pw"))


def test_native_accounts_need_the_admin_password_and_the_runtime_is_kubernetes():
    with pytest.raises(configurer.ConfigError, match="GEMHUB_ADMIN_PASSWORD"):
        chart.build_config(platform(), chart.ChartInputs(URLS, TOKENS))
    local = configurer.merge_platform({}, {})
    with pytest.raises(configurer.ConfigError, match="kubernetes"):
        chart.build_config(local, chart.ChartInputs(URLS, TOKENS, admin_password="pw"))


def test_oauth_client_secret_comes_from_the_environment(tmp_path):
    oauth = {"client_id": "gemhub", "callback_url": "https://h/hub/oauth_callback", "allow_all": True}
    (tmp_path / "gemhub.yaml").write_text(yaml.safe_dump(
        {"spawner": {"runtime": "kubernetes"}, "auth": {"type": "github", "oauth": oauth}}))
    cfg = chart.read_platform(tmp_path, {"GEMHUB_OAUTH_CLIENT_SECRET": "s3cret"})
    out = chart.build_config(cfg, chart.ChartInputs({}, {}))
    assert out["GitHubOAuthenticator"]["client_secret"] == "s3cret"
    with pytest.raises(configurer.ConfigError, match="client_secret"):
        chart.build_config(chart.read_platform(tmp_path, {}), chart.ChartInputs({}, {}))


def test_apply_appends_to_z2jhs_services_and_roles(tmp_path):
    (tmp_path / "gemhub.yaml").write_text(yaml.safe_dump({"spawner": {"runtime": "kubernetes"}}))
    (tmp_path / "services.yaml").write_text(yaml.safe_dump({n: {"url": u} for n, u in URLS.items()}))
    c = Config()
    c.JupyterHub.services = [{"name": n, "api_token": TOKENS[n]} for n in URLS] + [
        {"name": "other", "api_token": "to", "url": "http://other"}]
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["read:users:name"]}]
    secrets = {f"hub.services.{n}.apiToken": t for n, t in TOKENS.items()}
    chart.apply(c, lambda key, default="": secrets.get(key, default), tmp_path, {"GEMHUB_ADMIN_PASSWORD": "pw"})
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["quota"]["api_token"] == "tq" and services["quota"]["url"] == URLS["quota"]
    assert services["other"] == {"name": "other", "api_token": "to", "url": "http://other"}
    assert "idle-culler" in services
    (user,) = [r for r in c.JupyterHub.load_roles if r["name"] == "user"]
    assert "read:users:name" in user["scopes"] and "access:services!service=quota" in user["scopes"]
    assert c.KubeGemSpawner.quota_token == "tq"
    assert c.JupyterHub.authenticator_class == "gemhub.hub_config.auth.GemAuthenticator"
