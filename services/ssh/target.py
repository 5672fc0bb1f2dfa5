"""Which environment an SSH login reaches, and the command line that runs inside it.

``alice`` is alice's default server, ``alice+gpu`` her named server ``gpu``. A session runs
the way LocalGemSpawner runs the server (gemhub.spawner.local.launch), from the server's
runtime record (gemhub.spawner.local.record):

- namespace ``mnt`` (hub as root): ``nsenter --mount --target PID`` (the server's /gemini
  with its real read-only mounts), ``setpriv`` to the server's uid/gid/groups, then
  ``env --chdir=/gemini/code`` (chdir *inside* the namespace: nsenter's own --wd would
  resolve the path outside it). The process first joins the server's cgroups, so SSH
  work counts against the same CPU/memory limits as the notebook.
- namespace ``none`` (hub not root): the same user runs the command in the fallback root.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

from gemhub.spawner.local.record import RuntimeRecord

SHELL = "/bin/bash"
# Variables a client may send (OpenSSH sshd's default AcceptEnv, plus TERM from the pty).
CLIENT_ENV_PREFIXES = ("LC_",)
CLIENT_ENV_NAMES = ("LANG", "LANGUAGE", "COLORTERM")


class TargetError(Exception):
    """The login cannot reach an environment; ``message`` is shown to the person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def split_login(login: str) -> tuple[str, str]:
    """``alice`` -> (alice, ""), ``alice+gpu`` -> (alice, "gpu")."""
    user, sep, server = login.partition("+")
    if not user:
        raise TargetError("log in as USER or USER+SERVER (your hub user name)")
    if sep and (not server or "/" in server):
        raise TargetError(f"{login!r}: after '+' comes the name of one of your servers")
    return user, server


def label(user: str, server: str) -> str:
    return f"{user}+{server}" if server else user


def process_alive(record: RuntimeRecord) -> bool:
    """The record's process still runs and is the same process (not a reused pid)."""
    try:
        p = psutil.Process(record.pid)
        if record.pid_started and abs(p.create_time() - record.pid_started) > 1:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def check_record(record: RuntimeRecord, path: Path) -> None:
    """Refuse a record that could make the gateway run something as another user: it must
    be written by the gateway's own user (root), not writable by others, and name a
    non-root account that the server process really runs as."""
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise TargetError("gemhub: your environment's runtime record is not trustworthy; ask an administrator")
    if record.namespace != "mnt":
        return
    try:
        account_uid = pwd.getpwnam(record.unix_user).pw_uid
        process_uid = psutil.Process(record.pid).uids().real
    except (KeyError, psutil.Error):
        account_uid = process_uid = -1
    if record.uid == 0 or not record.uid == account_uid == process_uid:
        raise TargetError("gemhub: your environment's runtime record does not match its process; ask an"
                          " administrator")


@dataclass(frozen=True)
class Tools:
    nsenter: str
    setpriv: str
    env: str
    setsid: str
    sh: str

    @classmethod
    def find(cls) -> "Tools":
        found = {}
        for name in ("nsenter", "setpriv", "env", "setsid", "sh"):
            path = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
            if path is None:
                raise RuntimeError(f"{name} is missing (install util-linux and coreutils)")
            found[name] = path
        return cls(**found)


def session_env(record: RuntimeRecord, client_env: dict[str, str], term: str | None,
                peer: tuple[str, int], local: tuple[str, int]) -> dict[str, str]:
    """The server's environment (device binding included), plus what a login adds."""
    env = dict(record.env)
    env.setdefault("HOME", record.cwd)
    env.update(USER=record.unix_user, LOGNAME=record.unix_user, SHELL=SHELL, PWD=record.cwd,
               SSH_CONNECTION=f"{peer[0]} {peer[1]} {local[0]} {local[1]}",
               SSH_CLIENT=f"{peer[0]} {peer[1]} {local[1]}")
    for name, value in client_env.items():
        if name in CLIENT_ENV_NAMES or name.startswith(CLIENT_ENV_PREFIXES):
            env[name] = value
    if term:
        env["TERM"] = term
    return env


def command_argv(record: RuntimeRecord, argv: list[str], tools: Tools, *, as_root: bool,
                 tty: bool) -> tuple[list[str], str | None]:
    """(argv to spawn, cwd for the spawn) running ``argv`` inside the environment."""
    if record.namespace == "mnt":
        if not as_root:
            raise TargetError("the SSH gateway is not running as root and cannot enter your environment")
        chain = [tools.nsenter, f"--target={record.pid}", "--mount", "--",
                 tools.setpriv, f"--reuid={record.uid}", f"--regid={record.gid}", "--init-groups", "--",
                 tools.env, f"--chdir={record.cwd}", "--", *argv]
        if record.cgroup_procs:
            # `sh` writes its own pid (kept through every exec that follows) into the cgroups.
            join = 'for f; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 126; shift; done; shift; exec "$@"'
            chain = [tools.sh, "-c", join, "gemhub-ssh", *record.cgroup_procs, "--", *chain]
        cwd = "/"
    elif record.namespace == "none":
        chain, cwd = list(argv), record.cwd
    else:
        raise TargetError(f"unknown environment kind {record.namespace!r}")
    if tty:
        chain = [tools.setsid, "--ctty", *chain]
    return chain, cwd
