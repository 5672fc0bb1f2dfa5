"""Where a project's files live: ``state_dir/workspaces/<ws_id>/projects/<pid>/{code,output}``.

The state layout is owned by :mod:`gemhub.spawner.layout`; this module is the quota
service's (and its callers') entry point to it, so both sides agree on one function.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gemhub.spawner.layout import project_dirs

__all__ = ["DIR_MODE", "make_project_dirs", "project_dirs"]

log = logging.getLogger(__name__)

DIR_MODE = 0o2775


def make_project_dirs(state_dir: str | os.PathLike, ws_id: int, project_id: int) -> tuple[Path, Path]:
    """``mkdir -p`` the project's code/ and output/ (setgid, group-writable); returns them."""
    code, output = project_dirs(state_dir, ws_id, project_id)
    for d in (code, output):
        d.mkdir(parents=True, exist_ok=True)
        for p in (d, d.parent):
            try:
                os.chmod(p, DIR_MODE)
            except PermissionError:
                log.warning("cannot chmod %s to %o", p, DIR_MODE)
    return code, output
