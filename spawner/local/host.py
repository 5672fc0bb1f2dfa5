"""What of this machine a sandbox binds (:class:`~.runtime.HostSystem`), found once.

The operating system is the host's ``/usr`` and ``/etc`` with its top-level links into
``/usr``; the Python environment is the venv the servers run from, its base interpreter when
that lives outside ``/usr`` (a pyenv build), and GemHub's own package folders when it is
installed in editable mode (they live in the repository, of which nothing else is bound).
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil

from gemhub.spawner.local import nouserns, sandbox
from gemhub.spawner.local.runtime import HostSystem

GEMHUB_PACKAGES = ("hub_config", "spawner", "services", "lab", "cli")


class SandboxUnavailable(RuntimeError):
    """bubblewrap or setpriv is missing; the message says what to install."""


def _within(path: str, parents: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


def python_paths(python: str) -> tuple[str, ...]:
    """Folders (read-only in the sandbox) that ``python`` and GemHub's code need."""
    binds: list[str] = []
    venv = os.path.dirname(os.path.dirname(os.path.abspath(python)))
    if os.path.exists(os.path.join(venv, "pyvenv.cfg")):
        binds.append(venv)
    base = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if not _within(base, ["/usr", *binds]):
        binds.append(base)
    for name in GEMHUB_PACKAGES:
        folder = os.path.realpath(list(importlib.import_module(f"gemhub.{name}").__path__)[0])
        if not _within(folder, ["/usr", *binds]):
            binds.append(folder)
    return tuple(binds)


@functools.lru_cache(maxsize=8)
def host_system(python: str) -> HostSystem:
    bwrap = shutil.which("bwrap", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap is not installed (apt-get install bubblewrap)")
    if shutil.which("setpriv", path="/usr/bin:/bin") != "/usr/bin/setpriv":
        raise SandboxUnavailable("setpriv is missing (apt-get install util-linux)")
    try:
        nouserns.program_hex()
    except nouserns.FilterUnavailable as e:
        raise SandboxUnavailable(str(e)) from None
    links = {e.name: os.readlink(e.path) for e in os.scandir("/") if e.is_symlink()}
    return HostSystem(root_entries=sandbox.host_root_entries(links), python=python_paths(python),
                      root="/", bwrap=bwrap)
