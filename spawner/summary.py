"""What the hub's home page and the admin console say about one server (pure).

Built from what JupyterHub keeps for a server: its spawner state (preset, the devices it
holds, its run-time deadline: GemHub's spawners write them), its ``user_options`` (the
resolved workspace and project, a custom accelerator spec) and its start time. The
accelerator is described the way the spawn page describes it (``"1 × RTX4090 (24 GiB
each) · simulated"``) by an :class:`AcceleratorLabels` of the platform's presets and,
on the local runtime, its device inventory. No tornado or jupyterhub import.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from gemhub.lab import limits
from gemhub.spawner.accelerators import SpecError
from gemhub.spawner.accelerators import parse as parse_spec
from gemhub.spawner.presets import Catalog, PresetError, format_memory

UTC = dt.timezone.utc
ALLOCATION_KEY = "accelerator_allocation"  # spawner state: the devices a local server holds


class Devices(Protocol):
    """What AcceleratorLabels needs of an inventory (gemhub.spawner.local.devices.LocalDevices)."""

    def parse(self, text: str) -> Any: ...

    def describe(self, request: Any) -> str: ...


class AcceleratorLabels:
    """People's words for a server's accelerator: the preset's, or its custom spec's."""

    def __init__(self, catalog: Catalog, devices: Devices | None = None):
        self.catalog = catalog
        self.devices = devices

    def label(self, preset: str | None, custom_spec: str | None = None) -> str:
        try:
            if custom_spec:
                request = self.devices.parse(custom_spec) if self.devices else parse_spec(custom_spec)
                text = f"custom {custom_spec}"
            else:
                chosen = self.catalog.get(preset)
                request, text = chosen.request, chosen.accelerator
        except (PresetError, SpecError, ValueError) as e:  # e.g. a preset removed from the config since
            return f"unknown ({e})"
        if request is None or request.none:
            return "no accelerator"
        if self.devices is None:
            return text
        try:
            return self.devices.describe(request)
        except ValueError as e:  # an inventory that cannot be read right now
            return f"{text} (devices unavailable: {e})"

    def resources(self, preset: str | None) -> tuple[float, int] | None:
        """(CPUs, memory bytes) of a preset, None when it is not configured (any more)."""
        try:
            p = self.catalog.get(preset)
        except PresetError:
            return None
        return p.cpu, p.memory


@dataclass(frozen=True)
class ServerSummary:
    user: str
    name: str                      # "" for the default server
    status: str                    # running, starting, stopping or stopped
    preset: str | None
    accelerator: str               # AcceleratorLabels.label
    devices: tuple[str, ...]       # device ids held (local runtime), e.g. ("local/3",)
    workspace: str | None = None
    workspace_id: int | None = None
    project: str | None = None
    project_id: int | None = None
    started: dt.datetime | None = None
    stop_at: dt.datetime | None = None
    cpu: float | None = None
    memory: int | None = None      # bytes

    @property
    def label(self) -> str:
        return self.name or "default"

    @property
    def ssh_login(self) -> str:
        """The SSH user name that reaches this server (gemhub.services.ssh)."""
        return f"{self.user}+{self.name}" if self.name else self.user

    @property
    def active(self) -> bool:
        return self.status != "stopped"

    @property
    def memory_text(self) -> str:
        return format_memory(self.memory) if self.memory else "—"

    def run_time(self, now: dt.datetime) -> str:
        """"1 h 5 min" since the server started ("" when it has not)."""
        if self.started is None or self.status == "stopped":
            return ""
        return duration(int((now - self.started).total_seconds()))

    def stops_in(self, now: dt.datetime) -> str:
        """"stops in 1 h 20 min" under a run-time limit, "" without one."""
        if self.stop_at is None or self.status == "stopped":
            return ""
        return limits.describe(limits.remaining_seconds(self.stop_at, now))


@dataclass(frozen=True)
class Usage:
    """What some running servers hold together (a workspace's usage right now)."""

    servers: int = 0
    cpu: float = 0.0
    memory: int = 0        # bytes
    devices: int = 0

    @classmethod
    def of(cls, servers: list[ServerSummary]) -> "Usage":
        running = [s for s in servers if s.active]
        return cls(servers=len(running), cpu=sum(s.cpu or 0 for s in running),
                   memory=sum(s.memory or 0 for s in running), devices=sum(len(s.devices) for s in running))

    @property
    def text(self) -> str:
        if not self.servers:
            return "idle"
        cpu = f"{self.cpu:g} CPU"
        parts = [f"{self.servers} server{'s' if self.servers != 1 else ''}", cpu, format_memory(self.memory)]
        if self.devices:
            parts.append(f"{self.devices} device{'s' if self.devices != 1 else ''}")
        return " · ".join(parts)


def duration(seconds: int) -> str:
    if seconds < 60:
        return "less than a minute"
    hours, minutes = divmod(seconds // 60, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if minutes and not days:
        parts.append(f"{minutes} min")
    return " ".join(parts) or "0 min"


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)  # JupyterHub stores naive UTC


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def summarize(user: str, name: str, *, status: str, state: Mapping[str, Any] | None,
              user_options: Mapping[str, Any] | None, started: dt.datetime | None,
              labels: AcceleratorLabels) -> ServerSummary:
    """A server as people are told about it; anything missing or malformed is left out
    (a stopped server has no state, a server started before an upgrade may lack keys)."""
    state = state or {}
    options = user_options or {}
    preset = state.get("preset") or options.get("preset")
    preset = preset if isinstance(preset, str) else None
    custom = options.get("accelerator")
    custom = str(custom).strip() if isinstance(custom, (str, int)) and not isinstance(custom, bool) else None
    allocation = state.get(ALLOCATION_KEY)
    devices = tuple(str(d) for d in allocation.get("device_ids") or ()) if isinstance(allocation, Mapping) else ()
    try:
        stop_at = limits.parse_deadline(state.get(limits.STATE_KEY))
    except limits.LimitError:
        stop_at = None
    resources = labels.resources(preset) if preset else None
    return ServerSummary(
        user=user, name=name, status=status, preset=preset,
        accelerator=labels.label(preset, custom or None),
        devices=devices,
        workspace=options.get("workspace") if isinstance(options.get("workspace"), str) else None,
        workspace_id=_int(options.get("workspace_id")),
        project=options.get("project") if isinstance(options.get("project"), str) else None,
        project_id=_int(options.get("project_id")),
        started=_utc(started) if status != "stopped" else None,
        stop_at=stop_at,
        cpu=resources[0] if resources else None,
        memory=resources[1] if resources else None,
    )


def with_names(server: ServerSummary, workspaces: list[Mapping[str, Any]]) -> ServerSummary:
    """The server with its workspace's and project's current names, from a workspace list
    (the quota service's, with ``projects``): servers store only ids."""
    for ws in workspaces:
        if ws.get("id") == server.workspace_id:
            project = next((p.get("name") for p in ws.get("projects") or () if p.get("id") == server.project_id),
                           server.project)
            return dataclasses.replace(server, workspace=ws.get("name"), project=project)
    return server


def status_of(active: bool, ready: bool, pending: str | None) -> str:
    """running / starting / stopping / stopped, from JupyterHub's spawner flags."""
    if pending == "stop":
        return "stopping"
    if pending:
        return "starting"
    if ready:
        return "running"
    return "starting" if active else "stopped"
