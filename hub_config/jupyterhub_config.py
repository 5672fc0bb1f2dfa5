# JupyterHub configuration for GemHub: everything comes from gemhub.yaml (see
# gemhub.example.yaml) through gemhub.hub_config.configurer; edit that file, not this one.
from traitlets.config import Config

from gemhub.hub_config import configurer, platform

cfg, inputs = platform.load()
platform.preflight(cfg, inputs)  # one line and exit 1 when servers could not start here
c.merge(Config(configurer.build_config(cfg, inputs)))  # noqa: F821 (c is given by JupyterHub)
