"""The per-server runtime record: how to enter a running local server from outside.

LocalGemSpawner writes it when a server has started and removes it when the server stops;
the SSH gateway reads it to run sessions inside the server's sandbox (its mount, pid and IPC
namespaces, entered through the sandbox's own root-owned init process ``ns_pid``), as its
unix account and groups, with its environment. One JSON file per server, root-only (mode
0600: the environment holds the server's API token):
``<state_dir>/users/<user>/servers/<server key or "@default">.json`` (:mod:`.names`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from gemhub.spawner import layout
from gemhub.spawner.local.names import server_key

DEFAULT_SERVER = "@default"  # never a server key: keys have no "@"


def record_path(state_dir: str | os.PathLike, user: str, server: str = "") -> Path:
    return layout.user_dir(state_dir, user) / "servers" / f"{server_key(server) or DEFAULT_SERVER}.json"


@dataclass(frozen=True)
class RuntimeRecord:
    pid: int
    unix_user: str
    uid: int
    gid: int
    cwd: str
    root: str
    namespace: str  # "sandbox": enter the server's sandbox; "none": same-user fallback
    env: dict[str, str] = field(default_factory=dict)
    pid_started: float = 0.0  # the process's start time, to tell a reused pid apart
    cgroup_procs: list[str] = field(default_factory=list)  # cgroup.procs files sessions join
    groups: list[int] = field(default_factory=list)  # the server's supplementary groups
    ns_pid: int = 0  # the sandbox's init (root-owned, pid 1 inside): whose namespaces to enter
    ns_mnt: str = ""  # its mount namespace ("mnt:[4026532...]"), checked before entering

    def to_json(self) -> dict:
        return {"pid": self.pid, "unix_user": self.unix_user, "uid": self.uid, "gid": self.gid,
                "cwd": self.cwd, "env": dict(self.env), "root": self.root, "namespace": self.namespace,
                "pid_started": self.pid_started, "cgroup_procs": list(self.cgroup_procs),
                "groups": list(self.groups), "ns_pid": self.ns_pid, "ns_mnt": self.ns_mnt}

    @classmethod
    def from_json(cls, data: dict) -> "RuntimeRecord":
        return cls(pid=int(data["pid"]), unix_user=str(data["unix_user"]), uid=int(data["uid"]),
                   gid=int(data["gid"]), cwd=str(data["cwd"]), root=str(data["root"]),
                   namespace=str(data["namespace"]), env={str(k): str(v) for k, v in data["env"].items()},
                   pid_started=float(data.get("pid_started") or 0.0),
                   cgroup_procs=[str(p) for p in data.get("cgroup_procs") or []],
                   groups=[int(g) for g in data.get("groups") or []], ns_pid=int(data.get("ns_pid") or 0),
                   ns_mnt=str(data.get("ns_mnt") or ""))


def write_record(state_dir: str | os.PathLike, user: str, server: str, record: RuntimeRecord) -> Path:
    """Atomically (re)write the record, readable by its owner (root) only."""
    path = record_path(state_dir, user, server)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record.to_json(), f)
    os.replace(tmp, path)
    return path


def remove_record(state_dir: str | os.PathLike, user: str, server: str) -> None:
    try:
        record_path(state_dir, user, server).unlink()
    except FileNotFoundError:
        pass


def read_record(state_dir: str | os.PathLike, user: str, server: str) -> RuntimeRecord | None:
    """The record, or None when there is none (the server is not running locally)."""
    try:
        with open(record_path(state_dir, user, server)) as f:
            return RuntimeRecord.from_json(json.load(f))
    except FileNotFoundError:
        return None
