"""Turn the platform file (gemhub.yaml) into JupyterHub traitlets configuration.

Pure: no file, network or process access. ``jupyterhub_config.py`` gathers the inputs
(the parsed YAML, environment overrides, the state directory's ports and secrets) and
merges the result into ``c``. Like TLJH's configurer, every key is validated: a typo in
gemhub.yaml is an error, never a silently ignored setting.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

from gemhub.hub_config import database as hub_database
from gemhub.hub_config import services
from gemhub.hub_config.auth import authenticator_config
from gemhub.lab import hubservice as lab

DEFAULTS: dict[str, Any] = {
    "hub": {"ip": "127.0.0.1", "port": 8000, "base_url": "/", "log_level": "INFO"},
    "state_dir": "var",
    "database_url": "",
    "admin": {"username": "admin"},
    "auth": {
        "type": "native",
        "open_signup": True,
        "minimum_password_length": 8,
        "check_common_password": True,
        "allowed_failed_logins": 5,
        "lockout_seconds": 1800,
        "oauth": {},
    },
    "spawner": {
        "runtime": "local",
        "start_timeout": 60,
        "http_timeout": 30,
        "default_preset": "B1",
        "cgroups": "auto",
        "user_prefix": "gem-",
        "named_servers_per_user": 3,
    },
    "presets": [
        {"name": "B1", "display_name": "B1 · basic", "cpu": 1, "memory": "2G",
         "description": "development", "accelerator": "0", "use": "development",
         "price_per_hour": "0.50"},
        {"name": "B2", "display_name": "B2 · basic", "cpu": 2, "memory": "8G",
         "description": "development on a quarter of an RTX 4090", "accelerator": "0.25(RTX4090)",
         "use": "development", "price_per_hour": "1.00"},
        {"name": "S1", "display_name": "S1 · standard", "cpu": 2, "memory": "4G",
         "description": "development and small training runs", "accelerator": "1(RTX4090)",
         "use": "training", "price_per_hour": "3.00"},
        {"name": "S2", "display_name": "S2 · standard", "cpu": 4, "memory": "16G",
         "description": "training on half an A100", "accelerator": "0.5(A100-80G)",
         "use": "training", "price_per_hour": "6.00"},
        {"name": "S3", "display_name": "S3 · standard NPU", "cpu": 4, "memory": "16G",
         "description": "inference on an Ascend 910B", "accelerator": "1(910B)",
         "use": "inference", "price_per_hour": "5.00"},
        {"name": "P1", "display_name": "P1 · premium", "cpu": 2, "memory": "8G",
         "description": "training", "accelerator": "1(A100-80G)", "use": "training",
         "price_per_hour": "12.00"},
        {"name": "P2", "display_name": "P2 · premium", "cpu": 8, "memory": "32G",
         "description": "multi-GPU training", "accelerator": "2(A100-80G)", "use": "training",
         "price_per_hour": "24.00"},
    ],
    "accelerators": {
        "inventory": "auto",
        "simulated": [
            {"node": "local", "model": "A100-80G", "count": 2},
            {"node": "local", "model": "RTX4090", "count": 4},
            {"node": "local", "model": "910B", "count": 8},
        ],
        "policy": "binpack",
        "vendors": {},
        "kubernetes_profile": "native",
    },
    "services": {
        "quota": {"port": 0, "database_url": "", "reconcile_seconds": 30, "reconcile_grace_seconds": 60,
                  "queue_timeout": 86400, "preemptible_kinds": ["job"], "borrow_threshold": 0.2,
                  "priority_levels": {"low": 0, "normal": 100, "high": 200}, "default_priority": 100,
                  "max_priority": 100},
        "ssh": {"port": 2222, "host": "127.0.0.1", "public_host": "", "start_stopped": False,
                "max_failures": 5, "lockout_seconds": 1800, "database_url": ""},
        "data": {"port": 0, "database_url": "", "max_file_bytes": 2_000_000_000, "max_batch_files": 50,
                 "storage_allowance_gb": 50.0},
    },
    "kubernetes": {
        "namespace": "",
        "image": "quay.io/jupyterhub/singleuser:latest",
        "image_pull_policy": "IfNotPresent",
        "storage_claim": "gemhub-storage",
        "storage_sub_path": "",
        "datasets_claim": "gemhub-datasets",
        "datasets_sub_path": "",
        "cpu_guarantee_ratio": 1.0,
        "mem_guarantee_ratio": 1.0,
        "hub_connect_ip": "",
    },
    "kueue": {"enabled": False},
    "images": {
        "default": "base", "allow_host": True, "autobuild": True, "registry": "", "registry_tls_verify": True,
        "build_concurrency": 1, "build_timeout": 3600, "max_image_gb": 20.0, "max_context_gb": 2.0,
        "storage_driver": "overlay", "cache_dir": "", "catalog_dir": "", "port": 0, "database_url": "",
    },
    "lab": {"pip_index_url": "", "pip_trusted_host": "", "apt_mirror": ""},
    "culling": {"enabled": True, "timeout": 3600, "accelerator_timeout": 1800, "every": 300, "max_age": 0},
}

# spawner.runtime -> JupyterHub.spawner_class
RUNTIMES = {"local": "gemhub.spawner.local.spawner.LocalGemSpawner",
            "kubernetes": "gemhub.spawner.kube.spawner.KubeGemSpawner"}

# Keys whose value is a free-form mapping (validated by their own consumer).
_OPEN_KEYS = {("auth", "oauth"), ("accelerators", "vendors"), ("services", "quota", "priority_levels")}
INVENTORIES = ("auto", "nvml", "simulated", "none")
POLICIES = ("binpack", "spread")
KUBE_PROFILES = ("native", "hami", "volcano")
# More named servers than this per user is a typo, not a plan (each may hold devices).
MAX_NAMED_SERVERS = 100


class ConfigError(ValueError):
    """gemhub.yaml (or an environment override) is wrong; the message says where."""


@dataclass(frozen=True)
class Inputs:
    """Everything impure that the configuration depends on, gathered by the caller."""

    repo_dir: str
    state_dir: str
    python: str
    hub_port: int
    proxy_api_port: int
    service_ports: Mapping[str, int]
    service_tokens: Mapping[str, str]
    admin_password: str
    admin_token: str = ""


def merge_platform(user: Mapping[str, Any] | None, env: Mapping[str, str]) -> dict[str, Any]:
    """Defaults, overlaid by the user's gemhub.yaml, overlaid by GEMHUB_* variables."""
    merged = _overlay(DEFAULTS, user or {}, ())
    if env.get("GEMHUB_PORT"):
        try:
            merged["hub"]["port"] = int(env["GEMHUB_PORT"])
        except ValueError:
            raise ConfigError(f"GEMHUB_PORT must be a port number, not {env['GEMHUB_PORT']!r}")
    if env.get("GEMHUB_STATE_DIR"):
        merged["state_dir"] = env["GEMHUB_STATE_DIR"]
    if env.get("GEMHUB_DEFAULT_IMAGE"):
        merged["images"]["default"] = env["GEMHUB_DEFAULT_IMAGE"]
    if env.get("GEMHUB_SSH_PORT"):
        # several instances on one machine each need their own SSH gateway port
        raw = env["GEMHUB_SSH_PORT"]
        if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 65536:
            raise ConfigError(f"GEMHUB_SSH_PORT must be a port number (1-65535), not {raw!r}")
        merged["services"]["ssh"]["port"] = int(raw)
    _check(merged)
    return merged


def _overlay(base: Any, over: Any, path: tuple[str, ...]) -> Any:
    if isinstance(base, dict) and path not in _OPEN_KEYS:
        if not isinstance(over, Mapping):
            raise ConfigError(f"{_dotted(path)} must be a mapping, not {over!r}")
        out = copy.deepcopy(base)
        for key, value in over.items():
            if key not in base:
                known = ", ".join(sorted(base))
                raise ConfigError(f"unknown key {_dotted(path + (key,))!r} (known here: {known})")
            out[key] = _overlay(base[key], value, path + (key,))
        return out
    if isinstance(base, bool) and not isinstance(over, bool):
        raise ConfigError(f"{_dotted(path)} must be true or false, not {over!r}")
    if isinstance(base, int) and not isinstance(base, bool) and (
        isinstance(over, bool) or not isinstance(over, int)
    ):
        raise ConfigError(f"{_dotted(path)} must be a whole number, not {over!r}")
    if isinstance(base, list) and not isinstance(over, list):
        raise ConfigError(f"{_dotted(path)} must be a list, not {over!r}")
    return copy.deepcopy(over)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "(top level)"


def _check(cfg: Mapping[str, Any]) -> None:
    if not 0 < cfg["hub"]["port"] < 65536:
        raise ConfigError(f"hub.port must be between 1 and 65535, not {cfg['hub']['port']}")
    if cfg["spawner"]["runtime"] not in RUNTIMES:
        raise ConfigError(
            f"spawner.runtime {cfg['spawner']['runtime']!r} is not one of {', '.join(RUNTIMES)}"
        )
    _check_kubernetes(cfg["kubernetes"])
    if cfg["spawner"]["cgroups"] not in ("auto", "required", "off"):
        raise ConfigError("spawner.cgroups must be one of auto, required, off")
    named = cfg["spawner"]["named_servers_per_user"]
    if not 0 <= named <= MAX_NAMED_SERVERS:
        raise ConfigError(f"spawner.named_servers_per_user must be between 0 (no named servers) and"
                          f" {MAX_NAMED_SERVERS}, not {named}")
    try:
        lab.check(cfg)
    except lab.LabConfigError as e:
        raise ConfigError(str(e)) from None
    names = [p.get("name") for p in cfg["presets"]]
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ConfigError("presets: every preset needs a name")
    if len(set(names)) != len(names):
        raise ConfigError("presets: names must be unique")
    ssh = cfg["services"]["ssh"]
    if not 0 <= ssh["port"] < 65536:
        raise ConfigError(f"services.ssh.port must be between 1 and 65535, not {ssh['port']}")
    if ssh["max_failures"] < 1 or ssh["lockout_seconds"] < 1:
        raise ConfigError("services.ssh.max_failures and lockout_seconds must be at least 1")
    services.check_quota(cfg)
    data = cfg["services"]["data"]
    allowance = data["storage_allowance_gb"]
    if isinstance(allowance, bool) or not isinstance(allowance, (int, float)) or allowance < 0:
        raise ConfigError(f"services.data.storage_allowance_gb must be a number of GB >= 0, not {allowance!r}")
    if data["max_file_bytes"] < 1 or data["max_batch_files"] < 1:
        raise ConfigError("services.data: max_file_bytes and max_batch_files must be at least 1")
    if cfg["spawner"]["default_preset"] not in names:
        raise ConfigError(
            f"spawner.default_preset {cfg['spawner']['default_preset']!r} is not one of the presets"
            f" ({', '.join(names)})"
        )
    _check_accelerators(cfg)
    try:
        services.check_images(cfg["images"])
    except ValueError as e:
        raise ConfigError(f"images.{e}") from None


def _check_accelerators(cfg: Mapping[str, Any]) -> None:
    """The accelerators block, and every preset's spec parsed with the (overridden) registry."""
    from gemhub.spawner.local.devices import AcceleratorConfigError, check_config
    from gemhub.spawner.presets import Catalog, PresetError

    acc = cfg["accelerators"]
    for key, allowed in (("inventory", INVENTORIES), ("policy", POLICIES),
                         ("kubernetes_profile", KUBE_PROFILES)):
        if acc[key] not in allowed:
            raise ConfigError(f"accelerators.{key} must be one of {', '.join(allowed)}, not {acc[key]!r}")
    try:
        registry = check_config(acc)
    except AcceleratorConfigError as e:
        raise ConfigError(f"accelerators: {e}") from None
    try:
        Catalog.from_config(cfg["presets"], cfg["spawner"]["default_preset"], registry)
    except PresetError as e:
        raise ConfigError(f"presets: {e}") from None


def admin_handlers(cfg: Mapping[str, Any], state_dir: str) -> list[tuple]:
    """The hub's own admin pages, by import name so this module stays free of tornado: the
    admin console (gemhub.hub_config.console) and the device pages (inventory, maintenance,
    GPU metrics)."""
    accelerators = copy.deepcopy(dict(cfg["accelerators"]))
    kw = {"state_dir": state_dir, "accelerators": accelerators}
    console = {**kw, "presets": copy.deepcopy(cfg["presets"]), "default_preset": cfg["spawner"]["default_preset"],
               "runtime": cfg["spawner"]["runtime"]}
    mod = "gemhub.hub_config.devices"
    return [
        (r"/gemhub/admin/?(?:([^/]+)(?:/(.*))?)?", "gemhub.hub_config.console.handlers.ConsolePage", console),
        (r"/gemhub/devices", f"{mod}.DevicesPage", kw),
        (r"/api/gemhub/devices", f"{mod}.DevicesAPI", kw),
        (r"/api/gemhub/metrics", f"{mod}.DeviceMetricsAPI", kw),
    ]


def _check_kubernetes(kube: Mapping[str, Any]) -> None:
    from gemhub.spawner.kube.manifests import ManifestError, StorageSettings

    for key in ("namespace", "image", "image_pull_policy", "storage_claim", "storage_sub_path",
                "datasets_claim", "datasets_sub_path", "hub_connect_ip"):
        if not isinstance(kube[key], str):
            raise ConfigError(f"kubernetes.{key} must be text, not {kube[key]!r}")
    if kube["image_pull_policy"] not in ("Always", "IfNotPresent", "Never"):
        raise ConfigError("kubernetes.image_pull_policy must be one of Always, IfNotPresent, Never")
    for key in ("cpu_guarantee_ratio", "mem_guarantee_ratio"):
        if isinstance(kube[key], bool) or not isinstance(kube[key], (int, float)):
            raise ConfigError(f"kubernetes.{key} must be a number, not {kube[key]!r}")
    try:
        StorageSettings(**{k: kube[k] for k in ("storage_claim", "datasets_claim", "storage_sub_path",
                                                "datasets_sub_path", "cpu_guarantee_ratio",
                                                "mem_guarantee_ratio")})
    except ManifestError as e:
        raise ConfigError(f"kubernetes: {e}") from None


def _kubernetes_config(cfg: Mapping[str, Any], gem_spawner: Mapping[str, Any]) -> dict[str, Any]:
    """KubeGemSpawner's traits: the runtime-independent ones, then the kubernetes block."""
    kube = cfg["kubernetes"]
    accel = cfg["accelerators"]
    out = {k: copy.deepcopy(gem_spawner[k])
           for k in ("presets", "default_preset", "quota_url", "quota_token", "data_url", "data_token",
                     "lab_mirrors", "queue_timeout", "images_url", "images_token", "default_image",
                     "allow_host_image")}
    out.update({k: kube[k] for k in ("image", "image_pull_policy", "storage_claim", "storage_sub_path",
                                     "datasets_claim", "datasets_sub_path", "cpu_guarantee_ratio",
                                     "mem_guarantee_ratio")})
    if kube["namespace"]:
        out["namespace"] = kube["namespace"]
    out["accelerator_profile"] = accel["kubernetes_profile"]
    out["accelerator_vendors"] = copy.deepcopy(accel["vendors"])
    return out


def build_config(cfg: Mapping[str, Any], inputs: Inputs) -> dict[str, dict[str, Any]]:
    """The traitlets configuration ({ClassName: {trait: value}}) for a merged platform dict."""
    state = inputs.state_dir
    hub = cfg["hub"]
    admin = cfg["admin"]["username"]
    db_url = cfg["database_url"] or f"sqlite:///{state}/db/jupyterhub.sqlite"
    quota_db = cfg["services"]["quota"]["database_url"] or f"sqlite:///{state}/db/quota.sqlite"
    quota_url = services.service_url(inputs, "quota")
    base_url = hub["base_url"].rstrip("/") + "/"

    out: dict[str, dict[str, Any]] = {
        "JupyterHub": {
            "ip": hub["ip"],
            "port": hub["port"],
            "base_url": base_url,
            "hub_ip": "127.0.0.1",
            "hub_port": inputs.hub_port,
            "db_url": db_url,
            "cookie_secret_file": f"{state}/secrets/jupyterhub_cookie_secret",
            "log_level": hub["log_level"],
            "cleanup_servers": True,
            # gzip the hub's pages and API answers (the proxy passes them through as they are)
            "tornado_settings": {"compress_response": True},
            # Named servers (alice+gpu over SSH): JupyterHub's own limit counts named ones only;
            # 0 turns them off rather than meaning "unlimited" as it does in JupyterHub.
            "allow_named_servers": cfg["spawner"]["named_servers_per_user"] > 0,
            "named_server_limit_per_user": cfg["spawner"]["named_servers_per_user"],
            "spawner_class": "gemhub.spawner.local.spawner.LocalGemSpawner",
            "template_paths": [f"{inputs.repo_dir}/hub_config/templates"],
            "logo_file": f"{inputs.repo_dir}/hub_config/static/gemhub-logo.svg",
            "services": [services.quota_entry(cfg, inputs, quota_db)],
            "load_roles": [
                {"name": "user", "scopes": ["self", "access:services!service=quota"]},
                {"name": "gemhub-quota", "services": ["quota"], "scopes": list(services.QUOTA_SCOPES)},
            ],
        },
        "ConfigurableHTTPProxy": {
            "command": [f"{inputs.repo_dir}/node_modules/.bin/configurable-http-proxy"],
            "api_url": f"http://127.0.0.1:{inputs.proxy_api_port}",
            "pid_file": f"{state}/proxy.pid",
        },
        "Spawner": {
            "start_timeout": cfg["spawner"]["start_timeout"],
            "http_timeout": cfg["spawner"]["http_timeout"],
        },
        "LocalGemSpawner": {
            "state_dir": state,
            "presets": copy.deepcopy(cfg["presets"]),
            "default_preset": cfg["spawner"]["default_preset"],
            "quota_url": f"{quota_url}{base_url}services/quota/",
            "quota_token": inputs.service_tokens["quota"],
            "cgroups": cfg["spawner"]["cgroups"],
            "user_prefix": cfg["spawner"]["user_prefix"],
            "accelerators": copy.deepcopy(cfg["accelerators"]),
            "lab_mirrors": copy.deepcopy(cfg["lab"]),
            "queue_timeout": cfg["services"]["quota"]["queue_timeout"],
        },
        "Authenticator": {"admin_users": {admin}},
    }
    culler, culler_role = lab.culler_service(cfg, inputs.python, inputs.state_dir)
    out["JupyterHub"]["services"].append(culler)
    out["JupyterHub"]["load_roles"].append(culler_role)
    services.add_data_service(out, cfg, inputs, quota_url, base_url)
    services.add_images_service(out, cfg, inputs, quota_url, base_url)
    if cfg["spawner"]["runtime"] == "kubernetes":
        out["JupyterHub"]["spawner_class"] = RUNTIMES["kubernetes"]
        out["KubeGemSpawner"] = _kubernetes_config(cfg, out["LocalGemSpawner"])
        if not cfg["images"]["registry"]:
            # nothing is pushed anywhere a cluster pulls from: pods run kubernetes.image
            out["KubeGemSpawner"]["default_image"] = "host"
        if cfg["kubernetes"]["hub_connect_ip"]:
            # pods reach the hub through this address (e.g. its Service's name)
            out["JupyterHub"]["hub_ip"] = "0.0.0.0"
            out["JupyterHub"]["hub_connect_ip"] = cfg["kubernetes"]["hub_connect_ip"]
    if hub_database.db_kwargs(db_url):
        # survive a PostgreSQL restart (gemhub.hub_config.database)
        out["JupyterHub"]["db_kwargs"] = hub_database.db_kwargs(db_url)
        out["JupyterHub"].setdefault("tornado_settings", {})["log_function"] = hub_database.log_request
    if inputs.admin_token:
        out["JupyterHub"]["api_tokens"] = {inputs.admin_token: admin}
    services.add_ssh_service(out, cfg, inputs)
    out["JupyterHub"]["extra_handlers"] = admin_handlers(cfg, state)
    from gemhub.hub_config.home import HomeView  # tornado-free; imported here, not at module load

    # the home page's servers, workspaces and service links (called with the page's user)
    out["JupyterHub"].setdefault("template_vars", {})["gemhub_home"] = HomeView

    try:
        auth = authenticator_config(cfg["auth"])
    except ValueError as e:
        raise ConfigError(f"auth: {e}") from None
    out["JupyterHub"]["authenticator_class"] = auth.pop("__class__")
    for cls, traits in auth.items():
        out.setdefault(cls, {}).update(traits)
    if cfg["auth"]["type"] == "native":
        out.setdefault("GemAuthenticator", {})["admin_password"] = inputs.admin_password
    return out
