"""Resource limits for local workloads with cgroups (v1 or v2).

v1 (this machine): one directory per workload under each of the memory, cpu and pids
hierarchies (``/sys/fs/cgroup/<controller>/gemhub/<unit>``), and the devices hierarchy where
it is writable: it allows the workload only its own device nodes (``Limits.devices``); v2 when
the unified hierarchy has memory, cpu and pids (``/sys/fs/cgroup/gemhub/<unit>``; v2 filters
devices with eBPF programs, which GemHub does not load: there the sandbox's /dev, holding only
the allotted nodes, is the only barrier). The launcher joins the cgroup
before it execs the server, so every process of the workload (terminals included) is in
it, and ``kill()`` can end them all. Path and limit-file logic is pure; only
:meth:`Cgroup.create`, :meth:`Cgroup.kill` and :meth:`Cgroup.remove` touch the filesystem.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ROOT = "/sys/fs/cgroup"
PARENT = "gemhub"
V1_CONTROLLERS = ("memory", "cpu", "pids")
V1_DEVICES = "devices"
CFS_PERIOD_US = 100_000
MODES = ("auto", "required", "off")


class CgroupError(RuntimeError):
    """cgroups were required but cannot be used, or a limit could not be written."""


@dataclass(frozen=True)
class Limits:
    memory: int  # bytes
    cpu: float  # cores
    pids: int | None = None
    # devices-cgroup allow lines ("c 195:0 rwm"); None: no device filter
    devices: tuple[str, ...] | None = None


def detect(root: str = ROOT) -> str | None:
    """'v2', 'v1' or None: the hierarchy we can use to limit memory, cpu and pids."""
    controllers = os.path.join(root, "cgroup.controllers")
    if os.path.exists(controllers):
        try:
            with open(controllers) as f:
                have = set(f.read().split())
        except OSError:
            have = set()
        if {"memory", "cpu", "pids"} <= have and os.access(root, os.W_OK):
            return "v2"
    if all(os.access(os.path.join(root, c), os.W_OK) for c in V1_CONTROLLERS):
        return "v1"
    return None


def paths(version: str, unit: str, root: str = ROOT, parent: str = PARENT, devices: bool = False) -> list[str]:
    """The unit's directories; ``devices``: also the v1 devices hierarchy's."""
    if "/" in unit or unit in ("", ".", ".."):
        raise CgroupError(f"{unit!r} cannot be a cgroup name")
    if version == "v1":
        controllers = V1_CONTROLLERS + ((V1_DEVICES,) if devices else ())
        return [os.path.join(root, c, parent, unit) for c in controllers]
    if version == "v2":
        return [os.path.join(root, parent, unit)]
    raise ValueError(f"unknown cgroup version {version!r}")


def limit_files(version: str, unit_paths: list[str], limits: Limits) -> list[tuple[str, str]]:
    """(file, value) pairs that apply ``limits`` to a unit's directories."""
    quota = max(1000, int(round(limits.cpu * CFS_PERIOD_US)))
    out: list[tuple[str, str]] = []
    if version == "v1":
        by = {os.path.basename(os.path.dirname(os.path.dirname(p))): p for p in unit_paths}
        out.append((os.path.join(by["memory"], "memory.limit_in_bytes"), str(limits.memory)))
        out.append((os.path.join(by["cpu"], "cpu.cfs_period_us"), str(CFS_PERIOD_US)))
        out.append((os.path.join(by["cpu"], "cpu.cfs_quota_us"), str(quota)))
        if limits.pids:
            out.append((os.path.join(by["pids"], "pids.max"), str(limits.pids)))
        if limits.devices is not None and V1_DEVICES in by:
            # deny everything, then allow each line (each write to devices.allow adds one)
            out.append((os.path.join(by[V1_DEVICES], "devices.deny"), "a"))
            out += [(os.path.join(by[V1_DEVICES], "devices.allow"), line) for line in limits.devices]
    else:
        (p,) = unit_paths
        out.append((os.path.join(p, "memory.max"), str(limits.memory)))
        out.append((os.path.join(p, "memory.swap.max"), "0"))
        out.append((os.path.join(p, "cpu.max"), f"{quota} {CFS_PERIOD_US}"))
        if limits.pids:
            out.append((os.path.join(p, "pids.max"), str(limits.pids)))
    return out


def parent_cpu_weight(version: str, cpus: int | None = None) -> tuple[str, str]:
    """(file, value) of the parent cgroup's CPU weight: all environments together weigh as
    two busy processes per CPU against the host's own (v1: each top-level task has
    cpu.shares 1024; v2: cpu.weight 100).

    The weight only matters when both sides want CPU (the scheduler gives idle shares away):
    environments get every CPU the hub, its services and the kernel's own threads leave, and
    those are never starved by a crowd of servers. Weighting the parent by the number of
    servers did starve them: thirty new users' servers starting at once left the kernel's
    journal thread a thirtieth of a CPU, so each account command (eight fsyncs, machine-wide
    one at a time) took about a second and the last users waited half a minute for theirs.
    """
    n = 2 * (cpus or os.cpu_count() or 1)
    if version == "v1":
        return "cpu.shares", str(min(262144, 1024 * n))
    return "cpu.weight", str(min(10000, 100 * n))


def _write(path: str, value: str, optional: bool = False) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        if optional:
            log.debug("cgroup: cannot write %s=%s: %s", path, value, e)
            return
        raise CgroupError(f"cannot write {value} to {path}: {e}") from None


def _enable_v2_controllers(root: str, parent: str) -> None:
    for d in (root, os.path.join(root, parent)):
        os.makedirs(d, exist_ok=True)
        _write(os.path.join(d, "cgroup.subtree_control"), "+memory +cpu +pids", optional=True)


@dataclass
class Cgroup:
    version: str
    paths: list[str] = field(default_factory=list)

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(p, "cgroup.procs") for p in self.paths]

    def create(self, limits: Limits) -> "Cgroup":
        if self.version == "v2":
            root = os.path.dirname(os.path.dirname(self.paths[0]))
            _enable_v2_controllers(root, os.path.basename(os.path.dirname(self.paths[0])))
        for p in self.paths:
            os.makedirs(p, exist_ok=True)
        for path, value in limit_files(self.version, self.paths, limits):
            _write(path, value, optional=path.endswith("memory.swap.max"))
        self.weigh_parent()
        return self

    def _cpu_parent(self) -> str | None:
        if self.version == "v2":
            return os.path.dirname(self.paths[0]) if self.paths else None
        for p in self.paths:
            if os.path.basename(os.path.dirname(os.path.dirname(p))) == "cpu":
                return os.path.dirname(p)
        return None

    def weigh_parent(self) -> None:
        """Set the parent's CPU weight (see parent_cpu_weight)."""
        parent = self._cpu_parent()
        if parent is None:
            return
        name, value = parent_cpu_weight(self.version)
        _write(os.path.join(parent, name), value, optional=True)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            try:
                with open(f) as fh:
                    found.update(int(x) for x in fh.read().split())
            except FileNotFoundError:
                continue
        return found

    def kill(self, timeout: float = 5.0) -> set[int]:
        """SIGKILL every process in the cgroup until none is left; returns the pids killed."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        if self.version == "v2" and os.path.exists(os.path.join(self.paths[0], "cgroup.kill")):
            killed = self.pids()
            _write(os.path.join(self.paths[0], "cgroup.kill"), "1", optional=True)
        while True:
            left = self.pids()
            if not left:
                return killed
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                log.warning("cgroup %s still has processes %s after SIGKILL", self.paths[0], sorted(left))
                return killed
            time.sleep(0.02)

    def remove(self) -> None:
        for p in self.paths:
            for _ in range(50):
                try:
                    os.rmdir(p)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        log.warning("cannot remove cgroup %s: %s", p, e)
                        break
                    time.sleep(0.02)

    def to_state(self) -> dict[str, Any]:
        return {"version": self.version, "paths": list(self.paths)}

    @classmethod
    def from_state(cls, state: Any) -> "Cgroup | None":
        if not isinstance(state, dict) or state.get("version") not in ("v1", "v2"):
            return None
        return cls(version=state["version"], paths=[str(p) for p in state.get("paths", [])])


def plan(mode: str, unit: str, root: str = ROOT, is_root: bool | None = None) -> Cgroup | None:
    """The cgroup to use for a workload under ``mode`` (auto | required | off), or None.

    ``auto`` without usable cgroups logs a warning and runs without limits;
    ``required`` raises CgroupError instead.
    """
    if mode not in MODES:
        raise CgroupError(f"cgroups must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return None
    if is_root is None:
        is_root = os.geteuid() == 0
    version = detect(root) if is_root else None
    if version is None:
        why = "the hub is not running as root" if not is_root else (
            f"no writable memory/cpu/pids cgroup controllers under {root}")
        if mode == "required":
            raise CgroupError(f"cgroups are required but unavailable: {why}")
        log.warning("cgroups unavailable (%s): servers run WITHOUT memory/CPU limits", why)
        return None
    devices = version == "v1" and os.access(os.path.join(root, V1_DEVICES), os.W_OK)
    return Cgroup(version=version, paths=paths(version, unit, root, devices=devices))
