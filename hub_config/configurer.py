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

from gemhub.hub_config.auth import authenticator_config

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
    },
    "presets": [
        {"name": "B1", "display_name": "B1 · basic", "cpu": 1, "memory": "2G",
         "description": "development"},
        {"name": "S1", "display_name": "S1 · standard", "cpu": 2, "memory": "4G",
         "description": "development and small training runs"},
        {"name": "P1", "display_name": "P1 · premium", "cpu": 2, "memory": "8G",
         "description": "training"},
    ],
    "services": {
        "quota": {"port": 0, "database_url": ""},
        "data": {"port": 0, "database_url": "", "max_file_bytes": 2_000_000_000, "max_batch_files": 50,
                 "storage_allowance_gb": 50.0},
    },
}

# Keys whose value is a free-form mapping (validated by their own consumer).
_OPEN_KEYS = {("auth", "oauth")}


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
    if cfg["spawner"]["runtime"] != "local":
        raise ConfigError(
            f"spawner.runtime {cfg['spawner']['runtime']!r} is not available yet (use 'local')"
        )
    if cfg["spawner"]["cgroups"] not in ("auto", "required", "off"):
        raise ConfigError("spawner.cgroups must be one of auto, required, off")
    names = [p.get("name") for p in cfg["presets"]]
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ConfigError("presets: every preset needs a name")
    if len(set(names)) != len(names):
        raise ConfigError("presets: names must be unique")
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


def service_url(inputs: Inputs, name: str) -> str:
    return f"http://127.0.0.1:{inputs.service_ports[name]}"


def build_config(cfg: Mapping[str, Any], inputs: Inputs) -> dict[str, dict[str, Any]]:
    """The traitlets configuration ({ClassName: {trait: value}}) for a merged platform dict."""
    state = inputs.state_dir
    hub = cfg["hub"]
    admin = cfg["admin"]["username"]
    db_url = cfg["database_url"] or f"sqlite:///{state}/db/jupyterhub.sqlite"
    quota_db = cfg["services"]["quota"]["database_url"] or f"sqlite:///{state}/db/quota.sqlite"
    quota_url = service_url(inputs, "quota")
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
            "spawner_class": "gemhub.spawner.local.spawner.LocalGemSpawner",
            "template_paths": [f"{inputs.repo_dir}/hub_config/templates"],
            "services": [
                {
                    "name": "quota",
                    "display": True,
                    "url": quota_url,
                    "api_token": inputs.service_tokens["quota"],
                    "oauth_no_confirm": True,
                    "command": [
                        inputs.python, "-m", "gemhub.services.quota.app",
                        f"--QuotaService.port={inputs.service_ports['quota']}",
                        f"--QuotaService.db_url={quota_db}",
                        f"--QuotaService.state_dir={state}",
                    ],
                    "cwd": inputs.repo_dir,
                },
            ],
            "load_roles": [
                {"name": "user", "scopes": ["self", "access:services!service=quota"]},
                {
                    "name": "gemhub-quota",
                    "services": ["quota"],
                    "scopes": [
                        "list:users", "read:users", "read:servers",
                        "admin:groups", "groups", "read:groups", "list:groups",
                    ],
                },
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
        },
        "Authenticator": {"admin_users": {admin}},
    }
    if inputs.admin_token:
        out["JupyterHub"]["api_tokens"] = {inputs.admin_token: admin}

    if "data" in inputs.service_ports:
        _add_data_service(out, cfg, inputs, quota_url, base_url)

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


def _add_data_service(out: dict, cfg: Mapping[str, Any], inputs: Inputs, quota_url: str, base_url: str) -> None:
    """The data service (datasets, models, uploads, storage): asks the quota service about
    workspaces with the quota token (passed in its environment, not on its command line);
    the spawner resolves dataset/model mounts with the data service's token."""
    state = inputs.state_dir
    data = cfg["services"]["data"]
    data_url = service_url(inputs, "data")
    data_db = data["database_url"] or f"sqlite:///{state}/db/data.sqlite"
    out["JupyterHub"]["services"].append({
        "name": "data",
        "display": True,
        "url": data_url,
        "api_token": inputs.service_tokens["data"],
        "oauth_no_confirm": True,
        "command": [
            inputs.python, "-m", "gemhub.services.data.app",
            f"--DataService.port={inputs.service_ports['data']}",
            f"--DataService.db_url={data_db}",
            f"--DataService.state_dir={state}",
            f"--DataService.max_file_bytes={data['max_file_bytes']}",
            f"--DataService.max_batch_files={data['max_batch_files']}",
            f"--DataService.storage_allowance_gb={data['storage_allowance_gb']}",
        ],
        "environment": {
            "GEMHUB_QUOTA_URL": f"{quota_url}{base_url}services/quota/",
            "GEMHUB_QUOTA_TOKEN": inputs.service_tokens["quota"],
        },
        "cwd": inputs.repo_dir,
    })
    for role in out["JupyterHub"]["load_roles"]:
        if role["name"] == "user":
            role["scopes"] = [*role["scopes"], "access:services!service=data"]
    out["LocalGemSpawner"].update(
        data_url=f"{data_url}{base_url}services/data/",
        data_token=inputs.service_tokens["data"],
    )
