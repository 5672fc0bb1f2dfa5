"""How a local workload is launched: the launcher's command line and environment (pure).

The jobs service uses the same :func:`plan_launch` so a job and a notebook with the same
request get the same mounts, user and limits.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from gemhub.spawner import layout
from gemhub.spawner.request import WorkloadRequest

LAUNCHER = str(Path(__file__).resolve().with_name("launch.py"))
JUPYTER_CONFIG_DIR = str(Path(__file__).resolve().with_name("jupyter_config"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]
    root: str  # what the workload sees as /gemini
    mode: str  # "namespace" or "fallback"
    spec: dict = field(default_factory=dict)


def singleuser_command(python: str = sys.executable) -> list[str]:
    """jupyterhub-singleuser of the environment that ``python`` belongs to."""
    script = os.path.join(os.path.dirname(python), "jupyterhub-singleuser")
    return [python, script]


def plan_launch(
    request: WorkloadRequest,
    *,
    state_dir: str,
    unix_user: str | None,
    command: list[str],
    base_env: Mapping[str, str],
    cgroup_procs: list[str] = (),
    as_root: bool = True,
    python: str = sys.executable,
    device_env: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """The launcher invocation for ``request``.

    as_root: private mount namespace at /gemini and a drop to ``unix_user``;
    otherwise the same-user fallback rooted at ``state/users/<user>/gemini``.
    ``command`` is the workload's argv (``{root}`` in it is replaced by the root).
    ``device_env`` is the accelerator placement (visible devices, MPS limits, GEMHUB_ACCELERATOR).
    """
    # the version folder comes from the layout, never from a path in an answer: whatever a
    # service says, only published dataset/model versions of the state root get mounted
    chosen = {m.slot: layout.asset_version_dir(state_dir, m.kind, m.id, m.version) for m in request.mounts}
    mounts = layout.mount_table(
        state_dir, request.workspace.id, request.project.id,
        data=tuple(chosen[s] for s in layout.DATA_SLOTS if s in chosen),
        pretrain=tuple(chosen[s] for s in layout.PRETRAIN_SLOTS if s in chosen),
    )
    if as_root:
        if not unix_user:
            raise ValueError("a unix user is required to launch as root")
        mode, root = "namespace", layout.GEMINI_ROOT
        home = str(layout.user_home(state_dir, request.user))
    else:
        mode, root = "fallback", str(layout.user_gemini_root(state_dir, request.user))
        home = base_env.get("HOME") or os.path.expanduser("~")
    argv = [a.replace("{root}", root) for a in command]
    spec = {
        "mode": mode,
        "root": root,
        "mounts": [{"name": m.name, "source": str(m.source), "readonly": m.readonly} for m in mounts],
        "empty": str(layout.readonly_empty(state_dir)),
        "user": unix_user if as_root else None,
        "cgroup_procs": list(cgroup_procs),
        "umask": 0o002,
        "cwd": f"{root}/{layout.CODE}",
        "argv": argv,
    }
    env = dict(base_env)
    bindir = os.path.dirname(python)
    env.update(request.env())
    env.update(device_env or {})
    env.update(
        HOME=home,
        SHELL="/bin/bash",
        PATH=f"{bindir}:{DEFAULT_PATH}",
        JUPYTER_CONFIG_PATH=JUPYTER_CONFIG_DIR,
        GEMHUB_ROOT=root,
    )
    if as_root:
        env.update(USER=unix_user, LOGNAME=unix_user)
    env.pop("PYTHONPATH", None)
    launcher = [python, "-I", "-S", LAUNCHER, json.dumps(spec)]
    return LaunchPlan(argv=launcher, env=env, root=root, mode=mode, spec=spec)
