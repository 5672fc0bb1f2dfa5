"""Load the platform configuration the way jupyterhub_config.py and `make run` both need it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

from gemhub.hub_config import configurer, state

REPO_DIR = Path(__file__).resolve().parent.parent
# hub services with their own loopback port and hub API token
SERVICES = ("quota", "ssh", "data", "images")


def config_path(env: Mapping[str, str]) -> Path | None:
    """GEMHUB_CONFIG, else ./gemhub.yaml when present, else none (defaults only)."""
    if env.get("GEMHUB_CONFIG"):
        return Path(env["GEMHUB_CONFIG"])
    local = Path.cwd() / "gemhub.yaml"
    return local if local.exists() else None


def read(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The merged platform configuration (gemhub.yaml and GEMHUB_* overrides); touches nothing."""
    path = config_path(env)
    user: Any = {}
    if path is not None:
        with open(path) as f:
            user = yaml.safe_load(f) or {}
    return configurer.merge_platform(user, env)


def load(env: Mapping[str, str] = os.environ) -> tuple[dict[str, Any], configurer.Inputs]:
    cfg = read(env)
    root = state.prepare(cfg["state_dir"])
    ports = state.ports(root, ("hub", "proxy_api", *SERVICES))
    inputs = configurer.Inputs(
        repo_dir=str(REPO_DIR),
        state_dir=str(root),
        python=sys.executable,
        hub_port=ports["hub"],
        proxy_api_port=ports["proxy_api"],
        service_ports={name: ports[name] for name in SERVICES},
        service_tokens={name: state.secret(root, f"{name}-service.token")
                        for name in SERVICES},
        admin_password=state.secret(root, "admin-password", env.get("GEMHUB_ADMIN_PASSWORD"), 12),
        admin_token=env.get("GEMHUB_ADMIN_TOKEN", ""),
    )
    return cfg, inputs


def preflight(cfg: Mapping[str, Any], inputs: configurer.Inputs) -> None:
    """Stop with one line when servers could not start here (see gemhub.hub_config.preflight)."""
    if cfg["spawner"]["runtime"] != "local" or os.geteuid() != 0:
        return
    from gemhub.hub_config.preflight import PreflightError, check_sandbox

    try:
        check_sandbox(inputs.python)
    except PreflightError as e:
        sys.exit(f"GemHub cannot start: {e}")
