"""The GemHub hub services' entries in JupyterHub's configuration (pure).

Each service (gemhub.services.<name>.app) runs on its loopback port with its own token;
these functions add its ``JupyterHub.services`` entry, its role's scopes and what other
components need to reach it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # configurer imports this module
    from gemhub.hub_config.configurer import Inputs


# What each service's own token may do in the hub (its role), on every runtime.
QUOTA_SCOPES = ("list:users", "read:users", "read:servers", "admin:groups", "groups", "read:groups",
                "list:groups",
                # a member removed from a workspace: their servers there are stopped
                "servers")


def ssh_scopes(start_stopped: bool) -> list[str]:
    """The SSH gateway's: find users' servers, mark them active, ask the data service about
    drafts; and start a stopped server on login when configured to."""
    scopes = ["read:users:name", "read:servers", "users:activity", "access:services!service=data"]
    return scopes + ["servers"] if start_stopped else scopes


def ssh_template_vars(ssh: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """What the hub's home page shows about connecting over SSH."""
    return {"port": ssh["port"], "host": ssh["public_host"], "page": f"{base_url}services/ssh/"}


def service_url(inputs: Inputs, name: str) -> str:
    return f"http://127.0.0.1:{inputs.service_ports[name]}"


# Seconds the hub waits for a service to answer at start (JupyterHub's default is 30): a
# service waits up to 30 s for a database that is still starting, on a busy machine too.
SERVICE_START_TIMEOUT = 60


def service_entry(inputs: Inputs, name: str, app_class: str, db_url: str, *args: str,
                  environment: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A hub-managed GemHub service: gemhub.services.<name>.app on its port, database and
    the state folder, with its own token, shown on the hub's Services menu.

    Secrets go in the environment, never on the command line (which ``ps`` and the hub's
    log show): the database URL, which may hold a password, is ``GEMHUB_DATABASE_URL``;
    JupyterHub gives the service's token as ``JUPYTERHUB_API_TOKEN``; ``environment`` adds
    other ``GEMHUB_*`` variables. Only settings that are not secret are arguments."""
    return {
        "name": name,
        "display": True,
        "url": service_url(inputs, name),
        "api_token": inputs.service_tokens[name],
        "oauth_no_confirm": True,
        "timeout": SERVICE_START_TIMEOUT,
        "command": [
            inputs.python, "-m", f"gemhub.services.{name}.app",
            f"--{app_class}.port={inputs.service_ports[name]}",
            f"--{app_class}.state_dir={inputs.state_dir}",
            *args,
        ],
        "environment": {"GEMHUB_DATABASE_URL": db_url, **(environment or {})},
        "cwd": inputs.repo_dir,
        **extra,
    }


QUOTA_KINDS = ("notebook", "job", "inference")


def check_quota(cfg: Mapping[str, Any]) -> None:
    """services.quota's scheduling settings (the configurer's ConfigError on a wrong one)."""
    from gemhub.hub_config.configurer import ConfigError

    q = cfg["services"]["quota"]
    for key in ("reconcile_seconds", "reconcile_grace_seconds", "queue_timeout"):
        if q[key] < 1:
            raise ConfigError(f"services.quota.{key} must be at least 1 (seconds)")
    bad = [k for k in q["preemptible_kinds"] if k not in QUOTA_KINDS]
    if bad:
        raise ConfigError(f"services.quota.preemptible_kinds: {bad[0]!r} is not one of {', '.join(QUOTA_KINDS)}")
    t = q["borrow_threshold"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 10:
        raise ConfigError(f"services.quota.borrow_threshold must be a share like 0.2 (20 %), not {t!r}")
    levels = q["priority_levels"]
    if not isinstance(levels, Mapping) or not levels or any(
            not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) for k, v in levels.items()):
        raise ConfigError("services.quota.priority_levels must map level names to whole numbers")
    if len(set(levels.values())) != len(levels):
        raise ConfigError("services.quota.priority_levels: two levels have the same value")
    if q["default_priority"] > q["max_priority"]:
        raise ConfigError("services.quota.default_priority must not be above max_priority")
    if cfg["kueue"]["enabled"] and cfg["spawner"]["runtime"] != "kubernetes":
        raise ConfigError("kueue.enabled needs spawner.runtime: kubernetes")


def quota_platform(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What the quota service's ledger knows about the platform (gemhub.services.quota.ledger_config)."""
    q = cfg["services"]["quota"]
    return {
        "runtime": cfg["spawner"]["runtime"], "presets": cfg["presets"],
        "default_preset": cfg["spawner"]["default_preset"], "accelerators": cfg["accelerators"],
        "priority_levels": q["priority_levels"], "default_priority": q["default_priority"],
        "max_priority": q["max_priority"], "preemptible_kinds": q["preemptible_kinds"],
        "borrow_threshold": str(q["borrow_threshold"]), "reconcile_seconds": q["reconcile_seconds"],
        "reconcile_grace_seconds": q["reconcile_grace_seconds"],
        "kueue": {"enabled": cfg["kueue"]["enabled"], "namespace": cfg["kubernetes"]["namespace"]},
    }


def quota_entry(cfg: Mapping[str, Any], inputs: Inputs, db_url: str) -> dict[str, Any]:
    """The quota service (workspaces, quotas, the resource ledger); its platform settings
    (presets, accelerators, scheduling) travel in its environment as JSON, not on its
    command line. On the local runtime it also removes departed members from unix groups."""
    unix = ([f"--QuotaService.unix_prefix={cfg['spawner']['user_prefix']}"]
            if cfg["spawner"]["runtime"] == "local" else [])
    return service_entry(inputs, "quota", "QuotaService", db_url, *unix,
                         environment={"GEMHUB_QUOTA_PLATFORM": json.dumps(quota_platform(cfg), sort_keys=True)})


def let_users_open(jupyterhub: dict[str, Any], name: str) -> None:
    """Every user may open service ``name``'s pages (HubOAuth): a scope of the user role."""
    for role in jupyterhub["load_roles"]:
        if role["name"] == "user":
            role["scopes"] = [*role["scopes"], f"access:services!service={name}"]


def add_ssh_service(out: dict[str, dict[str, Any]], cfg: Mapping[str, Any], inputs: Inputs) -> None:
    """The SSH gateway (gemhub.services.ssh): its page, its token's scopes, and what the
    hub's home page shows about connecting."""
    ssh = cfg["services"]["ssh"]
    state = inputs.state_dir
    hub = cfg["hub"]
    base_url = hub["base_url"].rstrip("/") + "/"
    public_ip = ssh["public_host"] or ("127.0.0.1" if hub["ip"] in ("", "0.0.0.0", "::") else hub["ip"])
    hub_url = f"http://{public_ip}:{hub['port']}{base_url}"
    db = ssh["database_url"] or f"sqlite:///{state}/db/ssh.sqlite"
    jh = out["JupyterHub"]
    jh["services"].append(service_entry(
        inputs, "ssh", "SSHService", db,
        f"--SSHService.ssh_host={ssh['host']}",
        f"--SSHService.ssh_port={ssh['port']}",
        f"--SSHService.public_host={ssh['public_host']}",
        f"--SSHService.hub_url={hub_url}",
        f"--SSHService.start_stopped={ssh['start_stopped']}",
        f"--SSHService.max_failures={ssh['max_failures']}",
        f"--SSHService.lockout_seconds={ssh['lockout_seconds']}",
        # SFTP into draft versions: the gateway asks the data service with its own token
        environment={"GEMHUB_DATA_URL": f"{service_url(inputs, 'data')}{base_url}services/data/"},
    ))
    let_users_open(jh, "ssh")
    jh["load_roles"].append({"name": "gemhub-ssh", "services": ["ssh"], "scopes": ssh_scopes(ssh["start_stopped"])})
    jh.setdefault("template_vars", {})["gemhub_ssh"] = ssh_template_vars(ssh, base_url)
def add_data_service(out: dict, cfg: Mapping[str, Any], inputs: Inputs, quota_url: str, base_url: str) -> None:
    """The data service (datasets, models, uploads, storage): asks the quota service about
    workspaces with the quota token (passed in its environment, not on its command line);
    the spawner resolves dataset/model mounts with the data service's token."""
    state = inputs.state_dir
    data = cfg["services"]["data"]
    data_url = service_url(inputs, "data")
    data_db = data["database_url"] or f"sqlite:///{state}/db/data.sqlite"
    out["JupyterHub"]["services"].append(service_entry(
        inputs, "data", "DataService", data_db,
        f"--DataService.max_file_bytes={data['max_file_bytes']}",
        f"--DataService.max_batch_files={data['max_batch_files']}",
        f"--DataService.storage_allowance_gb={data['storage_allowance_gb']}",
        f"--DataService.sftp_port={cfg['services']['ssh']['port']}",
        f"--DataService.sftp_host={cfg['services']['ssh']['public_host']}",
        environment={
            "GEMHUB_QUOTA_URL": f"{quota_url}{base_url}services/quota/",
            "GEMHUB_QUOTA_TOKEN": inputs.service_tokens["quota"],
        },
    ))
    let_users_open(out["JupyterHub"], "data")
    out["LocalGemSpawner"].update(
        data_url=f"{data_url}{base_url}services/data/",
        data_token=inputs.service_tokens["data"],
    )


IMAGE_DRIVERS = ("overlay", "vfs")


def check_images(images: Mapping[str, Any]) -> None:
    """The images block (ValueError naming the key)."""
    default = images["default"]
    if not isinstance(default, str) or not default.strip() or "/" in default or len(default) > 64:
        raise ValueError(f"default must be an image name or 'host', not {default!r}")
    if default == "host" and not images["allow_host"]:
        raise ValueError("default is 'host' but allow_host is false")
    if images["storage_driver"] not in IMAGE_DRIVERS:
        raise ValueError(f"storage_driver must be one of {', '.join(IMAGE_DRIVERS)}")
    for key in ("build_concurrency", "build_timeout"):
        if images[key] < 1:
            raise ValueError(f"{key} must be at least 1")
    for key in ("max_image_gb", "max_context_gb"):
        value = images[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{key} must be a number of GB above 0, not {value!r}")
    registry = images["registry"]
    if not isinstance(registry, str) or any(c in registry for c in " \t\n@") or "://" in registry:
        raise ValueError(f"registry must be host:port[/prefix] (no scheme), not {registry!r}")


def add_images_service(out: dict, cfg: Mapping[str, Any], inputs: Inputs, quota_url: str, base_url: str) -> None:
    """The image service: asks the quota service about workspaces and projects (quota
    token in its environment), the hub about admins and running servers (its own token's
    scopes); the spawner resolves the chosen image with the image service's token."""
    state = inputs.state_dir
    images = cfg["images"]
    lab = cfg["lab"]
    db = images["database_url"] or f"sqlite:///{state}/db/images.sqlite"
    args = [
        f"--ImagesService.storage_driver={images['storage_driver']}",
        f"--ImagesService.build_concurrency={images['build_concurrency']}",
        f"--ImagesService.build_timeout={images['build_timeout']}",
        f"--ImagesService.max_image_gb={images['max_image_gb']}",
        f"--ImagesService.max_context_gb={images['max_context_gb']}",
        f"--ImagesService.registry={images['registry']}",
        f"--ImagesService.registry_tls_verify={images['registry_tls_verify']}",
        f"--ImagesService.pip_index_url={lab['pip_index_url']}",
        f"--ImagesService.pip_trusted_host={lab['pip_trusted_host']}",
        f"--ImagesService.apt_mirror={lab['apt_mirror']}",
        f"--ImagesService.autobuild={images['autobuild']}",
    ]
    if images["cache_dir"]:
        args.append(f"--ImagesService.cache_dir={images['cache_dir']}")
    if images["catalog_dir"]:
        args.append(f"--ImagesService.catalog_dir={images['catalog_dir']}")
    jh = out["JupyterHub"]
    jh["services"].append(service_entry(
        inputs, "images", "ImagesService", db, *args,
        environment={
            "GEMHUB_QUOTA_URL": f"{quota_url}{base_url}services/quota/",
            "GEMHUB_QUOTA_TOKEN": inputs.service_tokens["quota"],
        },
    ))
    let_users_open(jh, "images")
    jh["load_roles"].append({"name": "gemhub-images", "services": ["images"],
                             "scopes": ["list:users", "read:users", "read:servers"]})
    out["LocalGemSpawner"].update(
        images_url=f"{service_url(inputs, 'images')}{base_url}services/images/",
        images_token=inputs.service_tokens["images"],
        default_image=images["default"],
        allow_host_image=images["allow_host"],
    )
