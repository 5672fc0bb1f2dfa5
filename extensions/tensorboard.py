"""TensorBoard behind the hub proxy, through jupyter-server-proxy (entry point
``jupyter_serverproxy_servers``): a launcher entry that starts
``tensorboard --logdir=<root>/output`` on a free port, served at ``<server>/tensorboard/``.

TensorBoard's page names its Roboto fonts with absolute paths (``url(/font-roboto/...)``),
which behind a URL prefix reach the hub and 404; :func:`relative_fonts` (a
jupyter-server-proxy ``rewrite_response`` hook, also for ``%tensorboard`` on
``/proxy/<port>/``) makes them relative to the page, where TensorBoard serves them.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

ICON = str(Path(__file__).resolve().with_name("icons") / "tensorboard.svg")
FONT_URL = b"url(/font-roboto/"


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


def relative_fonts(response) -> None:
    """jupyter-server-proxy rewrite_response hook: TensorBoard's absolute font URLs made
    relative to the page (which ends in ``/``); other responses are left alone."""
    if "text/html" not in response.headers.get("Content-Type", ""):
        return
    body = response.body
    gzipped = response.headers.get("Content-Encoding", "") == "gzip"
    if gzipped:
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            return
    if FONT_URL not in body:
        return
    response.body = body.replace(FONT_URL, b"url(font-roboto/")
    if gzipped:  # sent as plain text now
        del response.headers["Content-Encoding"]


def setup_tensorboard() -> dict:
    return {
        "command": tensorboard_command(),
        "absolute_url": True,
        "rewrite_response": relative_fonts,
        "timeout": 60,
        # "Notebook": the launcher shows icons (kernelIconUrl) only in the kernel sections.
        "launcher_entry": {"title": "TensorBoard", "icon_path": ICON, "category": "Notebook"},
        "new_browser_tab": False,
    }
