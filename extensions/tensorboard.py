"""TensorBoard behind the hub proxy, through jupyter-server-proxy (entry point
``jupyter_serverproxy_servers``): a launcher entry that starts
``tensorboard --logdir=<root>/output`` on a free port, served at ``<server>/tensorboard/``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ICON = str(Path(__file__).resolve().with_name("icons") / "tensorboard.svg")


def logdir() -> str:
    """/gemini/output in an environment (GEMHUB_ROOT is /gemini, or the fallback root)."""
    return os.path.join(os.environ.get("GEMHUB_ROOT", "/gemini"), "output")


def tensorboard_command() -> list[str]:
    # The environment's own tensorboard (next to its Python), not whatever PATH finds first.
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if not os.access(exe, os.X_OK):
        exe = shutil.which("tensorboard") or "tensorboard"
    return [
        exe, f"--logdir={logdir()}", "--port={port}", "--host=127.0.0.1",
        # TensorBoard serves under the full prefix, so the proxy passes the absolute URL.
        "--path_prefix={base_url}tensorboard", "--reload_interval=5",
    ]


def setup_tensorboard() -> dict:
    return {
        "command": tensorboard_command(),
        "absolute_url": True,
        "timeout": 60,
        # "Notebook": the launcher shows icons (kernelIconUrl) only in the kernel sections.
        "launcher_entry": {"title": "TensorBoard", "icon_path": ICON, "category": "Notebook"},
        "new_browser_tab": False,
    }
