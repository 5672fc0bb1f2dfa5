"""Prepare the state directory: folders, ports picked once, generated secrets.

Ports and secrets are chosen on the first start and reused afterwards, so servers that
outlive a hub crash still reach the hub API at the address they were given.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path

SUBDIRS = ("db", "secrets", "users", "workspaces", "readonly/empty", "logs")
# Folders whose files are private (earlier releases left them 0644 in 0755 folders).
PRIVATE = ("db", "secrets", "logs")
# Dataset/model storage: environments get versions through read-only binds only.
STORAGE = ("datasets", "models")


def prepare(state_dir: str | os.PathLike) -> Path:
    """Make the state root and its folders, private to the hub's user (root).

    Environments never reach the state directory: their sandbox binds what they may see
    (project folders, dataset versions, their home). So the root is 0700, and everything
    GemHub writes under it is private unless made shareable on purpose (the process umask
    becomes 077; project folders, homes and published versions set their modes
    explicitly)."""
    os.umask(0o077)
    root = Path(state_dir).resolve()
    for sub in SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    for sub in ("readonly", *SUBDIRS, *STORAGE):
        if (root / sub).is_dir():
            (root / sub).chmod(0o700)
    (root / "readonly" / "empty").chmod(0o555)
    for sub in PRIVATE:
        _make_private(root / sub)
    return root


def _make_private(folder: Path) -> None:
    """Files 0600 and folders 0700 under ``folder`` (links are left alone; only root can
    write here, so nothing swaps a file for a link meanwhile)."""
    for dirpath, dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not os.path.islink(path) and st.st_mode & 0o077:
                os.chmod(path, st.st_mode & 0o700)
        for name in dirs:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ports(root: Path, names: tuple[str, ...]) -> dict[str, int]:
    """Ports for each name, allocated once and persisted in ports.json."""
    path = root / "ports.json"
    known: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for name in names:
        if name not in known:
            known[name] = _free_port()
            changed = True
    if changed:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    return {name: known[name] for name in names}


def secret(root: Path, name: str, given: str | None = None, nbytes: int = 32) -> str:
    """A secret from ``given`` (an environment override) or a file generated once."""
    if given:
        return given
    path = root / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
