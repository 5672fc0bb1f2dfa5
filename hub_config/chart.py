"""GemHub inside the Zero to JupyterHub (z2jh) hub pod that helm/gemhub deploys.

z2jh's ``jupyterhub_config.py`` owns the hub's infrastructure (proxy, database, cookie
secret, its ``hub.services`` with their API tokens in its Secret, KubeSpawner's pod
defaults from ``singleuser.*``). The umbrella chart's ``hub.extraConfig.gemhub`` then calls
:func:`apply`, which adds GemHub's own part from two files of the ``gemhub-hub-config``
ConfigMap:

- ``gemhub.yaml``: the platform file of the local runtime (presets, accelerators,
  kubernetes storage, auth, lab, culling, ssh), validated by
  :func:`gemhub.hub_config.configurer.merge_platform`, with ``spawner.runtime: kubernetes``;
- ``services.yaml``: each GemHub service the chart runs and its in-cluster URL.

Secrets never come from the ConfigMap: the services' tokens are read from z2jh's Secret
(``hub.services.<name>.apiToken``), the admin password and an OAuth client secret from
environment variables the chart fills from its ``gemhub-hub`` Secret.

:func:`build_config` is pure; :func:`apply` only gathers its inputs and merges the result
into z2jh's configuration (services and roles are appended to z2jh's, never replaced).
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from traitlets.config import Config

from gemhub.hub_config import configurer, services
from gemhub.hub_config.auth import authenticator_config
from gemhub.lab import hubservice as lab

CONFIG_DIR = "/usr/local/etc/gemhub"
TEMPLATES = str(Path(__file__).resolve().parent / "templates")
KUBE_SPAWNER = configurer.RUNTIMES["kubernetes"]
# Traits of the ``kubernetes:`` block that KubeGemSpawner takes as they are. The image is
# z2jh's (``singleuser.image``), so it is not among them.
_KUBE_TRAITS = ("storage_claim", "storage_sub_path", "datasets_claim", "datasets_sub_path",
                "cpu_guarantee_ratio", "mem_guarantee_ratio")


@dataclass(frozen=True)
class ChartInputs:
    """What the hub pod knows besides gemhub.yaml."""

    service_urls: Mapping[str, str]      # GemHub service -> in-cluster root URL (http://gemhub-quota:8080)
    tokens: Mapping[str, str]            # GemHub service -> its hub API token (z2jh's Secret)
    python: str = sys.executable
    admin_password: str = ""


def _api_url(inputs: ChartInputs, name: str, base_url: str) -> str:
    """The base URL of a service's API as the hub's spawner calls it (inside the cluster)."""
    if name not in inputs.service_urls:
        return ""
    return f"{inputs.service_urls[name].rstrip('/')}{base_url}services/{name}/"


def build_config(cfg: Mapping[str, Any], inputs: ChartInputs) -> dict[str, dict[str, Any]]:
    """GemHub's traitlets configuration for a merged platform dict on z2jh.

    ``JupyterHub.services`` holds GemHub's fields of each registered service (merged by
    name into z2jh's entries, which carry the tokens) plus GemHub's culler;
    ``JupyterHub.load_roles`` holds GemHub's roles (appended to z2jh's).
    """
    if cfg["spawner"]["runtime"] != "kubernetes":
        raise configurer.ConfigError("the Helm chart runs spawner.runtime kubernetes only")
    missing = sorted(set(inputs.service_urls) - set(inputs.tokens))
    if missing:
        raise configurer.ConfigError(
            f"no API token for service(s) {', '.join(missing)}: register each GemHub service under"
            " jupyterhub.hub.services in the chart's values")
    base_url = cfg["hub"]["base_url"].rstrip("/") + "/"
    admin = cfg["admin"]["username"]
    names = list(inputs.service_urls)

    jh: dict[str, Any] = {
        "spawner_class": KUBE_SPAWNER,
        "template_paths": [TEMPLATES],
        "services": [{"name": n, "url": inputs.service_urls[n], "display": True, "oauth_no_confirm": True}
                     for n in names],
        "load_roles": [{"name": "user", "scopes": ["self"]}],
    }
    for name in names:
        services.let_users_open(jh, name)
    if "quota" in names:
        jh["load_roles"].append({"name": "gemhub-quota", "services": ["quota"],
                                 "scopes": list(services.QUOTA_SCOPES)})
    if "ssh" in names:
        ssh = cfg["services"]["ssh"]
        jh["load_roles"].append({"name": "gemhub-ssh", "services": ["ssh"],
                                 "scopes": services.ssh_scopes(ssh["start_stopped"])})
        jh["template_vars"] = {"gemhub_ssh": services.ssh_template_vars(ssh, base_url)}
    culler, culler_role = lab.culler_service(cfg, inputs.python, ".")
    culler.pop("cwd")  # the hub pod's working directory
    jh["services"].append(culler)
    jh["load_roles"].append(culler_role)

    kube = cfg["kubernetes"]
    spawner: dict[str, Any] = {k: kube[k] for k in _KUBE_TRAITS}
    spawner.update(
        presets=copy.deepcopy(cfg["presets"]),
        default_preset=cfg["spawner"]["default_preset"],
        quota_url=_api_url(inputs, "quota", base_url),
        quota_token=inputs.tokens.get("quota", ""),
        data_url=_api_url(inputs, "data", base_url),
        data_token=inputs.tokens.get("data", ""),
        lab_mirrors=copy.deepcopy(cfg["lab"]),
        accelerator_profile=cfg["accelerators"]["kubernetes_profile"],
        accelerator_vendors=copy.deepcopy(cfg["accelerators"]["vendors"]),
    )
    out: dict[str, dict[str, Any]] = {"JupyterHub": jh, "KubeGemSpawner": spawner,
                                      "Authenticator": {"admin_users": {admin}}}
    try:
        auth = authenticator_config(cfg["auth"])
    except ValueError as e:
        raise configurer.ConfigError(f"auth: {e}") from None
    jh["authenticator_class"] = auth.pop("__class__")
    for cls, traits in auth.items():
        out.setdefault(cls, {}).update(traits)
    if cfg["auth"]["type"] == "native":
        if not inputs.admin_password:
            raise configurer.ConfigError("native accounts need the admin's initial password"
                                         " (GEMHUB_ADMIN_PASSWORD, from the gemhub-hub Secret)")
        out.setdefault("GemAuthenticator", {})["admin_password"] = inputs.admin_password
    return out


def read_platform(config_dir: str | os.PathLike, env: Mapping[str, str]) -> dict[str, Any]:
    """gemhub.yaml of the ConfigMap, with the OAuth client secret from the environment."""
    with open(Path(config_dir) / "gemhub.yaml") as f:
        user = yaml.safe_load(f) or {}
    secret = env.get("GEMHUB_OAUTH_CLIENT_SECRET")
    if secret and isinstance(user.get("auth"), dict) and isinstance(user["auth"].get("oauth"), dict):
        user["auth"]["oauth"]["client_secret"] = secret
    return configurer.merge_platform(user, {})


def read_services(config_dir: str | os.PathLike) -> dict[str, str]:
    with open(Path(config_dir) / "services.yaml") as f:
        listed = yaml.safe_load(f) or {}
    return {name: entry["url"] for name, entry in listed.items()}


def merge_services(registered: list[dict], gemhub: list[dict]) -> list[dict]:
    """z2jh's service entries (name, api_token, any values of hub.services.<name>) with
    GemHub's fields for the same names; GemHub's own managed services appended."""
    ours = {s["name"]: s for s in gemhub}
    out = []
    for entry in registered:
        extra = ours.pop(entry["name"], {})
        out.append({**extra, **entry})  # values set explicitly under hub.services win
    return out + list(ours.values())


def merge_roles(registered: list[dict], gemhub: list[dict]) -> list[dict]:
    """z2jh's roles (hub.loadRoles) and GemHub's; a role defined by both (``user``) gets
    the scopes of both."""
    out = [copy.deepcopy(r) for r in registered]
    by_name = {r["name"]: r for r in out}
    for role in gemhub:
        if role["name"] in by_name:
            mine = by_name[role["name"]]
            mine["scopes"] = list(dict.fromkeys([*mine.get("scopes", []), *role.get("scopes", [])]))
            mine["services"] = list(dict.fromkeys([*mine.get("services", []), *role.get("services", [])]))
            if not mine["services"]:
                del mine["services"]
        else:
            out.append(copy.deepcopy(role))
    return out


def apply(c, get_secret_value: Callable[..., str], config_dir: str | os.PathLike = CONFIG_DIR,
          env: Mapping[str, str] = os.environ) -> None:
    """Merge GemHub's configuration into z2jh's ``c`` (called from hub.extraConfig)."""
    cfg = read_platform(config_dir, env)
    urls = read_services(config_dir)
    tokens = {}
    for name in urls:
        token = get_secret_value(f"hub.services.{name}.apiToken", "")
        if token:
            tokens[name] = token
    inputs = ChartInputs(service_urls=urls, tokens=tokens, admin_password=env.get("GEMHUB_ADMIN_PASSWORD", ""))
    out = build_config(cfg, inputs)
    jh = out.pop("JupyterHub")
    c.JupyterHub.services = merge_services(list(c.JupyterHub.services), jh.pop("services"))
    c.JupyterHub.load_roles = merge_roles(list(c.JupyterHub.load_roles), jh.pop("load_roles"))
    c.merge(Config({"JupyterHub": jh, **out}))
