"""Single-user side of GemHub: the ``gemhub.lab`` Jupyter server extension.

Enabled in every environment (the runtime's jupyter_server_config.json). It serves the GPU
panel's figures and the run-time countdown (handlers.py), sets ``TENSORBOARD_PROXY_URL`` so
``%tensorboard`` in a notebook works behind the hub's proxy, and makes terminals
non-login shells that keep the environment's PATH. TensorBoard itself is a jupyter-server-proxy entry point (tensorboard.py).
Static files are gzipped once per server, not on every load (compression.py).
"""

from __future__ import annotations

import os

from . import gpu, limits, tensorboard


def _jupyter_server_extension_points():
    return [{"module": "gemhub.lab"}]


class GpuSource:
    """The slice from the environment, parsed once; the sampler is made on first use
    (NVML is initialised only when someone looks, never at import)."""

    def __init__(self, environ):
        self.error = None
        try:
            self.slice = gpu.parse_slice(environ.get(gpu.ENV_VAR))
        except gpu.SliceError as e:
            self.slice, self.error = gpu.NO_SLICE, str(e)
        self._sampler = None

    def current(self):
        if self.slice.devices and self._sampler is None:
            try:
                self._sampler = gpu.default_sampler(self.slice)
            except Exception as e:  # no NVML library, or no accelerator API installed
                return self.slice, None, f"device figures are unavailable: {type(e).__name__}: {e}"
        return self.slice, self._sampler, self.error


def _link_jupyter_server_extension(serverapp):
    """Before any extension loads. Terminals run an interactive, non-login bash: a login
    shell (the terminals' default under a spawner) runs /etc/profile, which resets PATH
    and hides the environment's python and pip. An explicit shell_command wins."""
    if "shell_command" not in serverapp.terminado_settings:
        serverapp.terminado_settings = {**serverapp.terminado_settings, "shell_command": ["/bin/bash"]}
    # %tensorboard runs TensorBoard on /proxy/<port>/: the same font fix as the launcher's.
    proxy = serverapp.config.ServerProxy
    if "non_service_rewrite_response" not in proxy:
        proxy.non_service_rewrite_response = tensorboard.relative_fonts
    # jupyter-resource-usage: CPU next to memory (off by default there), against the
    # preset's CPUs. Its cpu_limit is in percent (150 = 1.5 CPUs) while its default reads
    # CPU_LIMIT, a CPU count, which would flag any load above 1% as near the limit.
    usage = serverapp.config.ResourceUseDisplay
    if "track_cpu_percent" not in usage:
        usage.track_cpu_percent = True
    if "cpu_limit" not in usage and os.environ.get("CPU_LIMIT"):
        try:
            usage.cpu_limit = float(os.environ["CPU_LIMIT"]) * 100
        except ValueError:
            serverapp.log.error("gemhub.lab: CPU_LIMIT is not a number: %r", os.environ["CPU_LIMIT"])


def _load_jupyter_server_extension(serverapp):
    from jupyter_server.utils import url_path_join

    from . import compression
    from .handlers import GpuHandler, RuntimeHandler

    web_app = serverapp.web_app
    if compression.install(web_app):
        serverapp.log.info("gemhub.lab: static files are gzipped once and the result kept")
    base_url = web_app.settings["base_url"]
    try:
        stop_at = limits.parse_deadline(os.environ.get(limits.ENV_VAR))
    except limits.LimitError as e:
        serverapp.log.error("gemhub.lab: ignoring %s: %s", limits.ENV_VAR, e)
        stop_at = None
    # %tensorboard (tensorboard.notebook) links to this URL, with %PORT% replaced, through
    # jupyter-server-proxy's /proxy/<port>/ route, i.e. behind the hub's proxy and login.
    os.environ.setdefault("TENSORBOARD_PROXY_URL", url_path_join(base_url, "proxy/%PORT%/"))
    source = GpuSource(os.environ)
    web_app.add_handlers(".*$", [
        (url_path_join(base_url, "gemhub/gpu"), GpuHandler, {"source": source}),
        (url_path_join(base_url, "gemhub/runtime"), RuntimeHandler, {"stop_at": stop_at}),
    ])
    serverapp.log.info("gemhub.lab: GPU panel API at %sgemhub/gpu (%d device(s)%s)", base_url,
                       len(source.slice.devices), ", simulated" if source.slice.simulated else "")
