"""Idle culling and run-time limits: jupyterhub-idle-culler with GemHub's arbiter.

Runs as the hub service ``idle-culler`` (``python -m gemhub.lab.culling``). The culler
itself (listing servers, stopping them, concurrency, pagination) is the well-kept
jupyterhub-idle-culler; GemHub only decides *whether* a server goes, in
:func:`cull_reason`, through the culler's ``cull_arbiter_hook``:

- a server past its run-time deadline (spawner state ``stop_at``, from the workspace's
  ``max_runtime_minutes``) is stopped whether idle or not;
- a server holding accelerators (an allocation in its state, or a request for one) is stopped after the shorter
  ``accelerator_timeout`` of inactivity: idle GPUs are the scarce resource;
- any other server after ``timeout`` of inactivity (when idle culling is on).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from typing import Any, Mapping

from jupyterhub_idle_culler import IdleCuller, utcnow
from traitlets import Bool, Int, List, Unicode, default

from gemhub.lab import limits
from gemhub.services.common import lifecycle

RUNTIME_LIMIT = "run-time limit reached"
IDLE = "idle"
IDLE_ACCELERATOR = "idle while holding accelerators"


# Spawner state key of the devices a server holds (LocalGemSpawner's AcceleratorMixin).
ALLOCATION_KEY = "accelerator_allocation"


def holds_accelerator(server: Mapping[str, Any], accelerated_presets: set[str]) -> bool:
    """Whether the server holds accelerators: its saved allocation names devices (the
    spawner's state), or, where no allocation is recorded, its request asks for some (a
    custom spec in user_options, or a preset that has one)."""
    options = server.get("user_options") or {}
    state = server.get("state") or {}
    allocation = state.get(ALLOCATION_KEY)
    if isinstance(allocation, Mapping) and allocation.get("device_ids"):
        return True
    custom = str(options.get("accelerator") or "").strip()
    if custom and custom != "0":
        return True
    return (options.get("preset") or state.get("preset")) in accelerated_presets


def cull_reason(
    *,
    inactive: dt.timedelta | None,
    server: Mapping[str, Any],
    now: dt.datetime,
    idle_timeout: int,
    accelerator_timeout: int,
    accelerated_presets: set[str],
    cull_idle: bool = True,
) -> str | None:
    """Why the server should be stopped now, or None to keep it (pure)."""
    state = server.get("state") or {}
    try:
        deadline = limits.parse_deadline(state.get(limits.STATE_KEY))
    except limits.LimitError:
        deadline = None  # written by our spawner; a bad value must not stop someone's work
    if limits.expired(deadline, now):
        return RUNTIME_LIMIT
    if not cull_idle or inactive is None:
        return None
    if accelerator_timeout and holds_accelerator(server, accelerated_presets):
        return IDLE_ACCELERATOR if inactive.total_seconds() >= accelerator_timeout else None
    return IDLE if inactive.total_seconds() >= idle_timeout else None


class GemCuller(IdleCuller):
    """jupyterhub-idle-culler with the arbiter above."""

    cull_idle_servers = Bool(
        True, help="Stop servers idle longer than the timeouts; off: only run-time limits apply."
    ).tag(config=True)
    accelerator_timeout = Int(
        0, help="Idle timeout (seconds) for servers holding accelerators; 0: same as timeout."
    ).tag(config=True)
    accelerated_presets = List(
        Unicode(), help="Names of the presets that ask for accelerators (from the preset catalog)."
    ).tag(config=True)

    aliases = {
        **IdleCuller.aliases,
        "accelerator-timeout": "GemCuller.accelerator_timeout",
        "accelerated-preset": "GemCuller.accelerated_presets",
        "cull-idle": "GemCuller.cull_idle_servers",
    }

    @default("cull_arbiter_hook")
    def _default_arbiter(self):
        return self.arbitrate

    @default("config_file")
    def _default_config_file(self):
        return ""  # everything comes on the command line from gemhub.yaml

    state_dir = Unicode(
        help="GemHub state directory (GEMHUB_STATE_DIR): where the culler claims to be the only one."
    ).tag(config=True)

    @default("state_dir")
    def _default_state_dir(self):
        return os.environ.get("GEMHUB_STATE_DIR", "")

    def start(self):
        # The hub stops services with SIGINT, then SIGTERM. A process started in the
        # background inherits an ignored SIGINT, which would leave the hub waiting.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: sys.exit(0))
        # One culler per hub, gone with it: a hub killed with -9 and restarted must not
        # find the old one still stopping servers next to the new one.
        lifecycle.die_with_parent(signal.SIGTERM)
        if self.state_dir:
            try:
                self._claim = lifecycle.claim(self.state_dir, "idle-culler", "gemhub.lab.culling")
            except lifecycle.StartFailure as e:
                self.log.critical("idle culler cannot start: %s", e)
                lifecycle.report_failure(self.state_dir, "idle-culler", str(e))
                self.exit(1)
        super().start()

    def arbitrate(self, *, inactive, inactive_limit, server, **kwargs) -> bool:
        reason = cull_reason(
            inactive=inactive, server=server, now=utcnow(), idle_timeout=inactive_limit,
            accelerator_timeout=self.accelerator_timeout,
            accelerated_presets=set(self.accelerated_presets), cull_idle=self.cull_idle_servers,
        )
        if reason is not None:
            self.log.info("stopping %s: %s", server.get("full_name") or server.get("name"), reason)
        return reason is not None


def main() -> None:
    GemCuller.launch_instance()


if __name__ == "__main__":
    main()
