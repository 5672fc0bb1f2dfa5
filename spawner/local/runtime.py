"""How a local workload is launched: the launcher's command line and environment (pure).

As root, a workload runs in a bubblewrap sandbox (:mod:`.sandbox`) as its unix account; the
hub's own user without root gets the same-user fallback rooted at ``state/users/<user>/gemini``.
The jobs service uses the same :func:`plan_launch` so a job and a notebook with the same
request get the same sandbox, mounts, user, devices and limits.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from gemhub.spawner import layout
from gemhub.spawner.local import nouserns, sandbox
from gemhub.spawner.request import WorkloadRequest

LAUNCHER = str(Path(__file__).resolve().with_name("launch.py"))
JUPYTER_CONFIG_DIR = str(Path(__file__).resolve().with_name("jupyter_config"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where the platform's files for an environment appear inside its sandbox.
MIRRORS_DIR = "/opt/gemhub/mirrors"
UMASK = 0o002  # files written in /gemini are shared with the workspace's members


@dataclass(frozen=True)
class Identity:
    """The unix account a workload runs as (gathered by the caller: passwd, group lists)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str  # the home folder on the host; bound at /home/<name>

    @property
    def sandbox_home(self) -> str:
        return f"/home/{self.name}"


@dataclass(frozen=True)
class HostSystem:
    """What of the host the sandbox binds (gathered once by the caller)."""

    root_entries: tuple[sandbox.RootEntry, ...]  # the OS: host_root_entries() or an image's
    python: tuple[str, ...]  # the Python environment: venv, base interpreter, GemHub sources
    root: str = "/"
    bwrap: str = "bwrap"


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]
    root: str  # what the workload sees as /gemini
    mode: str  # "sandbox" or "fallback"
    spec: dict = field(default_factory=dict)


def singleuser_command(python: str = sys.executable) -> list[str]:
    """jupyterhub-singleuser of the environment that ``python`` belongs to."""
    script = os.path.join(os.path.dirname(python), "jupyterhub-singleuser")
    return [python, script]


def _mounts(request: WorkloadRequest, state_dir: str) -> list[layout.Mount]:
    # the version folder comes from the layout, never from a path in an answer: whatever a
    # service says, only published dataset/model versions of the state root get mounted
    chosen = {m.slot: layout.asset_version_dir(state_dir, m.kind, m.id, m.version) for m in request.mounts}
    return layout.mount_table(
        state_dir, request.workspace.id, request.project.id,
        data=tuple(chosen[s] for s in layout.DATA_SLOTS if s in chosen),
        pretrain=tuple(chosen[s] for s in layout.PRETRAIN_SLOTS if s in chosen),
    )


def sandbox_spec(request: WorkloadRequest, *, state_dir: str, identity: Identity, host: HostSystem,
                 devices: sandbox.Allotment = sandbox.Allotment(),
                 extra: tuple[sandbox.Bind, ...] = ()) -> sandbox.SandboxSpec:
    """The sandbox of ``request``: /gemini from the layout (unused read-only slots get the
    state's empty folder, so writing there fails like in a used one: "Read-only file
    system"), the account's home, the devices."""
    gemini = [sandbox.Bind(str(m.source), m.target, "ro" if m.readonly else "rw")
              for m in _mounts(request, state_dir)]
    return sandbox.SandboxSpec(
        uid=identity.uid, gid=identity.gid, groups=identity.groups,
        home=sandbox.Bind(identity.home, identity.sandbox_home, "rw"),
        root=host.root, root_entries=host.root_entries,
        gemini=tuple(gemini), python=host.python,
        extra=tuple(extra), devices=devices.binds,
        cwd=f"{layout.GEMINI_ROOT}/{layout.CODE}",
    )


def plan_launch(
    request: WorkloadRequest,
    *,
    state_dir: str,
    identity: Identity | None,
    host: HostSystem | None,
    command: list[str],
    base_env: Mapping[str, str],
    cgroup_procs: list[str] = (),
    python: str = sys.executable,
    device_env: Mapping[str, str] | None = None,
    devices: sandbox.Allotment = sandbox.Allotment(),
    extra: tuple[sandbox.Bind, ...] = (),
    path: str | None = None,
) -> LaunchPlan:
    """The launcher invocation for ``request``.

    With an ``identity`` (the hub is root): the sandbox, dropped to that account. Without one:
    the same-user fallback rooted at ``state/users/<user>/gemini``. ``command`` is the
    workload's argv (``{root}`` in it is replaced by what it sees as /gemini); ``device_env``
    the accelerator placement (visible devices, MPS limits, GEMHUB_ACCELERATOR) and
    ``devices`` the device nodes it may open; ``path`` the workload's PATH (an image's; default:
    ``python``'s folder first).
    """
    env = dict(base_env)
    env.update(request.env())
    env.update(device_env or {})
    env.update(SHELL="/bin/bash", PATH=path or f"{os.path.dirname(python)}:{DEFAULT_PATH}",
               JUPYTER_CONFIG_PATH=JUPYTER_CONFIG_DIR)
    env.pop("PYTHONPATH", None)
    if identity is not None:
        if host is None:
            raise ValueError("a sandboxed launch needs the host system's description")
        root = layout.GEMINI_ROOT
        spec = sandbox_spec(request, state_dir=state_dir, identity=identity, host=host,
                            devices=devices, extra=extra)
        argv = [a.replace("{root}", root) for a in command]
        env.update(HOME=identity.sandbox_home, USER=identity.name, LOGNAME=identity.name, GEMHUB_ROOT=root)
        launch = {"mode": "sandbox", "cgroup_procs": list(cgroup_procs), "umask": UMASK,
                  "groups": list(identity.groups),
                  "cwd": spec.cwd, "argv": sandbox.bwrap_argv(spec, argv, host.bwrap),
                  "seccomp": nouserns.program_hex()}
        mode = "sandbox"
    else:
        root = str(layout.user_gemini_root(state_dir, request.user))
        argv = [a.replace("{root}", root) for a in command]
        env.update(HOME=base_env.get("HOME") or os.path.expanduser("~"), GEMHUB_ROOT=root)
        launch = {
            "mode": "fallback", "root": root,
            "mounts": [{"name": m.name, "source": str(m.source), "readonly": m.readonly}
                       for m in _mounts(request, state_dir)],
            "empty": str(layout.readonly_empty(state_dir)), "cgroup_procs": list(cgroup_procs),
            "umask": UMASK, "cwd": f"{root}/{layout.CODE}", "argv": argv,
        }
        mode = "fallback"
    launcher = [python, "-I", "-S", LAUNCHER, json.dumps(launch)]
    return LaunchPlan(argv=launcher, env=env, root=root, mode=mode, spec=launch)
