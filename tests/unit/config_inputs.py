"""Inputs for configurer tests: one entry per hub service, so a new service is added once."""

from gemhub.hub_config.configurer import Inputs
from gemhub.hub_config.platform import SERVICES

INPUTS = Inputs(
    repo_dir="/repo", state_dir="/state", python="/venv/bin/python", hub_port=8081,
    proxy_api_port=8001,
    service_ports={name: 9101 + i for i, name in enumerate(SERVICES)},
    service_tokens={name: f"{name[0]}tok" for name in SERVICES},
    admin_password="pw", admin_token="",
)
