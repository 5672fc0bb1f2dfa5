"""Which environment an SSH login reaches, and the command line that runs inside it.

``alice`` is alice's default server, ``alice+gpu`` her named server ``gpu``. A session runs
inside the server's own sandbox (gemhub.spawner.local.sandbox), found through the server's
runtime record (gemhub.spawner.local.record):

- namespace ``sandbox`` (hub as root): the process starts as the server's launcher
  (gemhub.spawner.local.launch), which joins the server's cgroups (so SSH work counts
  against the same CPU/memory/device limits as the notebook) and loads the sandbox's
  seccomp filter (no new user namespaces), then
  ``nsenter --target INIT --mount --pid --ipc`` enters the sandbox through its root-owned
  init process (the account cannot touch it, so it cannot redirect root into namespaces of
  its own making), ``setpriv`` drops to the server's uid/gid/groups without capabilities,
  and ``env -i --chdir=/gemini/code VAR=... CMD`` sets the environment *as the account*.
  Everything before ``env`` runs as root with a fixed environment (``LANG=C.UTF-8`` and a
  plain PATH): nothing the client sends reaches a root process (gettext in a root process
  would load message catalogues from a path named by the client's ``LANGUAGE``).
- namespace ``none`` (hub not root): the same user runs the command in the fallback root.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from gemhub.spawner.local import nouserns
from gemhub.spawner.local.record import RuntimeRecord
from gemhub.spawner.local.runtime import LAUNCHER, UMASK

SHELL = "/bin/bash"
# Variables a client may send (OpenSSH sshd's default AcceptEnv, plus TERM from the pty);
# applied inside the environment only, as its account.
CLIENT_ENV_PREFIXES = ("LC_",)
CLIENT_ENV_NAMES = ("LANG", "LANGUAGE", "COLORTERM")
# The environment of the root part of the chain: fixed, whatever the client or server says.
ROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int): (un)lock a pty's peer
TIOCGPTPEER = 0x5441  # _IO('T', 0x41): open a pty's peer from its master (Linux 4.13)


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
    """Refuse a record that could make the gateway run something as another user or enter
    the wrong namespaces: it must be written by the gateway's own user (root), not writable
    by others, name a non-root account, and point at the server's sandbox init (a root-owned
    child of the server process, in the mount namespace recorded when it started)."""
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise TargetError("gemhub: your environment's runtime record is not trustworthy; ask an administrator")
    if record.namespace != "sandbox":
        if record.namespace == "none":
            return
        raise TargetError("gemhub: your environment was started by an older GemHub; restart it to connect")
    try:
        account_uid = pwd.getpwnam(record.unix_user).pw_uid
        init = psutil.Process(record.ns_pid)
        sound = (init.uids().real == 0 and init.ppid() == record.pid
                 and os.readlink(f"/proc/{record.ns_pid}/ns/mnt") == record.ns_mnt)
    except (KeyError, psutil.Error, OSError):
        account_uid, sound = -1, False
    if record.uid == 0 or record.uid != account_uid or 0 in record.groups or not sound:
        raise TargetError("gemhub: your environment's runtime record does not match its process; ask an"
                          " administrator")


@dataclass(frozen=True)
class Tools:
    nsenter: str
    setpriv: str
    env: str
    setsid: str
    # the launcher that loads the sandbox's seccomp filter (no new user namespaces) first
    launcher: tuple[str, ...] = (sys.executable, "-I", "-S", LAUNCHER)

    @classmethod
    def find(cls) -> "Tools":
        found = {}
        for name in ("nsenter", "setpriv", "env", "setsid"):
            # from the system's own folders only: these run as root
            path = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
            if path is None:
                raise RuntimeError(f"{name} is missing (install util-linux and coreutils)")
            found[name] = path
        return cls(**found)


def session_env(record: RuntimeRecord, client_env: dict[str, str], term: str | None,
                peer: tuple[str, int], local: tuple[str, int]) -> dict[str, str]:
    """The session's environment inside the sandbox: the server's (device binding included),
    what a login adds, and the client's variables that are on the allow-list."""
    env = dict(record.env)
    env.setdefault("HOME", record.cwd)
    env.update(USER=record.unix_user, LOGNAME=record.unix_user, SHELL=SHELL, PWD=record.cwd,
               SSH_CONNECTION=f"{peer[0]} {peer[1]} {local[0]} {local[1]}",
               SSH_CLIENT=f"{peer[0]} {peer[1]} {local[1]}")
    for name, value in client_env.items():
        if not isinstance(name, str) or not isinstance(value, str) or "=" in name or "\0" in name + value:
            continue
        if name in CLIENT_ENV_NAMES or name.startswith(CLIENT_ENV_PREFIXES):
            env[name] = value
    if term and "\0" not in term:
        env["TERM"] = term
    return env


def command_argv(record: RuntimeRecord, argv: list[str], env: dict[str, str], tools: Tools, *,
                 as_root: bool, tty: bool) -> tuple[list[str], str | None, dict[str, str]]:
    """(argv to spawn, cwd for the spawn, environment for the spawn) running ``argv`` with
    ``env`` inside the environment."""
    if record.namespace == "sandbox":
        if not as_root:
            raise TargetError("the SSH gateway is not running as root and cannot enter your environment")
        groups = ",".join(str(g) for g in record.groups)
        chain = [tools.nsenter, f"--target={record.ns_pid}", "--mount", "--pid", "--ipc", "--",
                 tools.setpriv, f"--reuid={record.uid}", f"--regid={record.gid}",
                 f"--groups={groups}" if groups else "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
                 # env's assignments come after "--" and before the command
                 tools.env, "-i", f"--chdir={record.cwd}", "--",
                 *(f"{k}={v}" for k, v in sorted(env.items()) if k and "=" not in k), *argv]
        cwd, spawn_env = "/", dict(ROOT_ENV)
    elif record.namespace == "none":
        chain, cwd, spawn_env = list(argv), record.cwd, dict(env)
    else:
        raise TargetError(f"unknown environment kind {record.namespace!r}")
    if tty:
        chain = [tools.setsid, "--ctty", *chain]
    if record.namespace == "sandbox":
        # the server's launcher first: it joins the server's cgroups (its pid is kept through
        # every exec that follows) and loads the sandbox's seccomp filter, as for the server
        spec = {"mode": "exec", "cgroup_procs": list(record.cgroup_procs), "umask": UMASK,
                "seccomp": nouserns.program_hex(), "argv": chain}
        chain = [*tools.launcher, json.dumps(spec)]
    return chain, cwd, spawn_env


def open_pty(record: RuntimeRecord) -> tuple[int, int]:
    """(master, slave) of a pseudo-terminal for a session. In a sandbox it comes from the
    sandbox's own devpts (its /dev/pts, reached through its root-owned init), so that
    ``tty``, screen and tmux find their terminal there; the slave belongs to the account,
    as sshd makes it."""
    if record.namespace != "sandbox":
        return os.openpty()
    master = os.open(f"/proc/{record.ns_pid}/root/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        os.fchown(slave, record.uid, record.gid)
        os.fchmod(slave, 0o620)
    except BaseException:
        os.close(master)
        raise
    return master, slave
