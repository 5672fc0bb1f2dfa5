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


def prepare(state_dir: str | os.PathLike) -> Path:
    root = Path(state_dir).resolve()
    for sub in SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    # Per-user servers (other unix accounts) traverse the state root to reach their mounts;
    # secrets stay private to root.
    root.chmod(0o755)
    (root / "secrets").chmod(0o700)
    (root / "readonly").chmod(0o755)
    (root / "readonly" / "empty").chmod(0o555)
    return root


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
