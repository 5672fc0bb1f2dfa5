"""Checks at start-up that make a spawn fail later for a reason known now.

The one that matters: the per-user accounts must be able to run the servers' Python inside
the sandbox. A venv whose files are private to root (made under umask 077), or a Python only
root can execute, would otherwise fail every spawn with "server exited with status 1".
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from gemhub.spawner.local import sandbox
from gemhub.spawner.local.host import SandboxUnavailable, host_system

PROBE = "import jupyterhub, gemhub.lab"  # site-packages and GemHub's sources readable
NOBODY = 65534


class PreflightError(RuntimeError):
    """The platform cannot start servers here; the message is one line saying what to do."""


def check_sandbox(python: str, timeout: float = 60) -> None:
    """Run ``python -c PROBE`` in a sandbox as ``nobody``, like a server would run."""
    try:
        host = host_system(python)
    except SandboxUnavailable as e:
        raise PreflightError(f"environments cannot start: {e}") from None
    with tempfile.TemporaryDirectory(prefix="gemhub-preflight-") as home:
        os.chown(home, NOBODY, NOBODY)
        spec = sandbox.SandboxSpec(
            uid=NOBODY, gid=NOBODY, groups=(NOBODY,), home=sandbox.Bind(home, "/home/nobody", "rw"),
            root=host.root, root_entries=host.root_entries, python=host.python, cwd="/")
        argv = sandbox.bwrap_argv(spec, [python, "-I", "-c", PROBE], host.bwrap)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           env={"PATH": "/usr/bin:/bin", "HOME": "/home/nobody"})
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise PreflightError(
            f"per-user accounts cannot run {python} ({last}); make the venv readable by all "
            "(e.g. `make clean`, then `umask 022; make run`) or clone into a folder others can read")
