"""The state directory's paths and the /gemini layout of a workload (pure: no I/O).

ARCHITECTURE.md §5 fixes the layout; every other component asks this module for a path
instead of joining strings itself (the quota service imports :func:`project_dirs`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

GEMINI_ROOT = "/gemini"
CODE = "code"
OUTPUT = "output"
DATA_SLOTS = ("data-1", "data-2", "data-3")
PRETRAIN_SLOTS = ("pretrain1", "pretrain2", "pretrain3")
READONLY_SLOTS = DATA_SLOTS + PRETRAIN_SLOTS

# Ids become path components: only plain tokens, never "..", "/" or empty.
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class LayoutError(ValueError):
    """A path component (workspace/project id, user name) that cannot become a path."""


def _component(value: object, what: str) -> str:
    text = str(value)
    if isinstance(value, bool) or not _ID.match(text) or text in (".", ".."):
        raise LayoutError(f"{what} {value!r} cannot be used as a directory name")
    return text


def _root(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir)


def db_dir(state_dir: str | os.PathLike) -> Path:
    return _root(state_dir) / "db"


def secrets_dir(state_dir: str | os.PathLike) -> Path:
    return _root(state_dir) / "secrets"


def logs_dir(state_dir: str | os.PathLike) -> Path:
    return _root(state_dir) / "logs"


def readonly_empty(state_dir: str | os.PathLike) -> Path:
    """The empty directory mounted read-only on data and pretrain slots with nothing selected."""
    return _root(state_dir) / "readonly" / "empty"


def user_dir(state_dir: str | os.PathLike, user: str) -> Path:
    if not user or "/" in user or user in (".", "..") or "\0" in user:
        raise LayoutError(f"user name {user!r} cannot be used as a directory name")
    return _root(state_dir) / "users" / user


def user_home(state_dir: str | os.PathLike, user: str) -> Path:
    """Home of the user's unix account."""
    return user_dir(state_dir, user) / "home"


def user_gemini_root(state_dir: str | os.PathLike, user: str) -> Path:
    """The stand-in for /gemini when the hub cannot make mount namespaces (not root)."""
    return user_dir(state_dir, user) / "gemini"


def workspace_dir(state_dir: str | os.PathLike, ws_id: object) -> Path:
    return _root(state_dir) / "workspaces" / _component(ws_id, "workspace id")


def project_dir(state_dir: str | os.PathLike, ws_id: object, project_id: object) -> Path:
    return workspace_dir(state_dir, ws_id) / "projects" / _component(project_id, "project id")


def project_dirs(state_dir: str | os.PathLike, ws_id: object, project_id: object) -> tuple[Path, Path]:
    """(code, output) directories of a project: persistent, read-write inside environments."""
    base = project_dir(state_dir, ws_id, project_id)
    return base / CODE, base / OUTPUT


@dataclass(frozen=True)
class Mount:
    """One entry of the /gemini mount table: ``source`` appears at ``/gemini/<name>``."""

    name: str
    source: Path
    readonly: bool

    @property
    def target(self) -> str:
        return f"{GEMINI_ROOT}/{self.name}"


def mount_table(
    state_dir: str | os.PathLike,
    ws_id: object,
    project_id: object,
    data: tuple[Path, ...] = (),
    pretrain: tuple[Path, ...] = (),
) -> list[Mount]:
    """The /gemini mounts of a workload: code and output rw, data-1..3 and pretrain1..3 ro.

    ``data``/``pretrain`` are the selected dataset/model version directories (up to 3 each);
    empty slots get the state's empty read-only directory.
    """
    if len(data) > len(DATA_SLOTS) or len(pretrain) > len(PRETRAIN_SLOTS):
        raise LayoutError("at most 3 datasets and 3 models can be mounted")
    code, output = project_dirs(state_dir, ws_id, project_id)
    empty = readonly_empty(state_dir)
    mounts = [Mount(CODE, code, False), Mount(OUTPUT, output, False)]
    for slots, chosen in ((DATA_SLOTS, data), (PRETRAIN_SLOTS, pretrain)):
        for i, slot in enumerate(slots):
            mounts.append(Mount(slot, Path(chosen[i]) if i < len(chosen) else empty, True))
    return mounts


# -- datasets and models (owned by the data service; the spawner mounts their versions) ----
ASSET_DIRS = {"dataset": "datasets", "model": "models"}


def asset_dir(state_dir: str | os.PathLike, kind: str, asset_id: object) -> Path:
    """``state/datasets/<id>`` or ``state/models/<id>``."""
    if kind not in ASSET_DIRS:
        raise LayoutError(f"unknown asset kind {kind!r}")
    return _root(state_dir) / ASSET_DIRS[kind] / _component(asset_id, f"{kind} id")


def asset_version_dir(state_dir: str | os.PathLike, kind: str, asset_id: object, version: object) -> Path:
    """A published (immutable, read-only) version: ``state/datasets/<id>/<version>``."""
    return asset_dir(state_dir, kind, asset_id) / _component(version, "version")


def image_rootfs_dir(state_dir: str | os.PathLike, workspace_id: object, version_id: object) -> Path:
    """An image version's exported root filesystem (the read-only root of its environments):
    ``state/images/rootfs/<version>`` for official images, ``state/workspaces/<ws>/images/<version>``
    for a workspace's own (counted in its ``images`` storage). Both parents are root-only."""
    if workspace_id is None:
        return _root(state_dir) / "images" / "rootfs" / _component(version_id, "image version id")
    return workspace_dir(state_dir, workspace_id) / "images" / _component(version_id, "image version id")


def asset_draft_dir(state_dir: str | os.PathLike, kind: str, asset_id: object, version: object) -> Path:
    """A draft version being filled (uploads, SFTP): ``state/datasets/<id>/drafts/<version>``."""
    return asset_dir(state_dir, kind, asset_id) / "drafts" / _component(version, "version")
