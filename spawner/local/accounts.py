"""Unix accounts for hub users and unix groups for workspaces (local runtime, needs root).

A hub user ``alice`` runs as ``<prefix>alice`` (home ``state/users/alice/home``); every
member of workspace 7 is in group ``gemws-7``, which owns the workspace's project
directories with mode 2775 so members share code and outputs. ``useradd``/``groupadd``/
``usermod`` run only when something is missing: a spawn for a known user makes none.

Concurrency: a burst of new users' first spawns must not queue behind one another, so
changes are serialised per account or group name only (two spawns of one user never both
run ``useradd``), and at most :data:`MAX_COMMANDS` of these commands run at once. The
commands serialise their own writes of /etc/passwd, /etc/group and the shadow files
through ``lckpwdf`` (/etc/.pwd.lock, waited for up to 15 s), which also covers other
programs on the machine; the bound keeps a burst well inside that wait, and a command that
still reports the files locked is run again.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import logging
import os
import pwd
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: account commands (useradd, groupadd, usermod) running at once in one hub
MAX_COMMANDS = 4
#: tries of a command that finds the password files locked by another program
LOCKED_TRIES = 5

MAX_UNIX_NAME = 32
_VALID = re.compile(r"^[a-z_][a-z0-9_-]*$")


class AccountError(RuntimeError):
    """A unix account or group could not be created."""


def unix_name(hub_user: str, prefix: str = "gem-") -> str:
    """A valid, collision-safe unix login for a hub user name.

    Names that are already valid keep their text; others are slugged and get a short
    hash of the original, so "Bob" and "bob" never share an account.
    """
    slug = re.sub(r"[^a-z0-9_-]+", "-", hub_user.lower()).strip("-") or "user"
    name = prefix + slug
    if slug != hub_user or len(name) > MAX_UNIX_NAME or not _VALID.match(name):
        digest = hashlib.sha256(hub_user.encode()).hexdigest()[:8]
        name = f"{prefix}{slug[:MAX_UNIX_NAME - len(prefix) - 9]}-{digest}"
        if not _VALID.match(name):
            name = f"{prefix}u-{digest}"
    if not _VALID.match(name) or len(name) > MAX_UNIX_NAME:
        raise AccountError(f"cannot make a unix name for {hub_user!r} with prefix {prefix!r}")
    return name


def workspace_group(ws_id: int | str) -> str:
    return f"gemws-{ws_id}"


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


async def _run(*argv: str) -> None:
    for attempt in range(LOCKED_TRIES):
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode == 0:
            return
        text = out.decode(errors="replace").strip()
        # "cannot lock /etc/passwd; try again later.": lckpwdf's 15 s ran out
        if "cannot lock" not in text or attempt == LOCKED_TRIES - 1:
            raise AccountError(f"{' '.join(argv)} failed ({proc.returncode}): {text}")
        log.warning("%s: %s; trying again", argv[0], text)
        await asyncio.sleep(0.5 * (attempt + 1))


class _NameLocks:
    """One asyncio lock per name, forgotten once nobody holds or waits for it (a burst of
    new users leaves no lock behind)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def __len__(self) -> int:
        return len(self._locks)


class Accounts:
    """Creates what is missing: per name one at a time, different names in parallel."""

    def __init__(self) -> None:
        self._names = _NameLocks()
        self._commands = asyncio.Semaphore(MAX_COMMANDS)

    async def _run(self, *argv: str) -> None:
        async with self._commands:
            await _run(*argv)

    async def ensure_user(self, name: str, home: Path, groups: tuple[str, ...] = ()) -> Account:
        """The account ``name`` with its home ``home``. A new account is made a member of
        ``groups`` (which must exist) by the same ``useradd``: one command fewer per new user,
        and these commands run one at a time machine-wide."""
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            async with self._names(f"user:{name}"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    home.parent.mkdir(parents=True, exist_ok=True)
                    log.info("creating unix account %s (home %s)", name, home)
                    await self._run("useradd", "--home-dir", str(home), "--create-home",
                                    "--shell", "/bin/bash", "--user-group",
                                    *(("--groups", ",".join(groups)) if groups else ()), name)
                    pw = pwd.getpwnam(name)
        # The account may outlive a state directory: make sure its home exists here.
        if pw.pw_dir != str(home):
            async with self._names(f"user:{name}"):
                await self._run("usermod", "--home", str(home), name)
            pw = pwd.getpwnam(name)
        if not home.is_dir():
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            home.chmod(0o750)
        return Account(name=name, uid=pw.pw_uid, gid=pw.pw_gid, home=str(home))

    async def ensure_group(self, group: str) -> grp.struct_group:
        """Create ``group`` if it is missing."""
        try:
            return grp.getgrnam(group)
        except KeyError:
            async with self._names(f"group:{group}"):
                try:
                    return grp.getgrnam(group)
                except KeyError:
                    log.info("creating unix group %s", group)
                    await self._run("groupadd", group)
                    return grp.getgrnam(group)

    async def ensure_member(self, group: str, user: str) -> int:
        """Create ``group`` if needed and add ``user`` to it; returns its gid."""
        gr = await self.ensure_group(group)
        if user not in gr.gr_mem:
            async with self._names(f"user:{user}"):
                if user not in grp.getgrnam(group).gr_mem:
                    await self._run("usermod", "--append", "--groups", group, user)
        return gr.gr_gid


def share_dirs(dirs: list[Path], gid: int) -> None:
    """Project directories: owned by the workspace group, setgid, group-writable (2775)."""
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        st = d.stat()
        if st.st_gid != gid:
            os.chown(d, -1, gid)
        if (st.st_mode & 0o7777) != 0o2775:
            d.chmod(0o2775)
    # The project directory itself: members traverse it, other accounts cannot.
    for d in {p.parent for p in dirs}:
        st = d.stat()
        if st.st_gid != gid:
            os.chown(d, -1, gid)
        if (st.st_mode & 0o7777) != 0o2750:
            d.chmod(0o2750)

def remove_user(name: str) -> list[str]:
    """Delete a unix account (tests, uninstall). Missing accounts are fine.

    Returns the workspace groups it was in, so callers can drop the ones left empty.
    """
    import subprocess

    groups = [g.gr_name for g in grp.getgrall() if name in g.gr_mem and g.gr_name.startswith("gemws-")]
    subprocess.run(["userdel", name], check=False, capture_output=True)
    return groups


def remove_empty_groups(groups: list[str]) -> None:
    """Delete workspace groups that no longer have members (tests, uninstall)."""
    import subprocess

    for group in groups:
        try:
            if grp.getgrnam(group).gr_mem:
                continue
        except KeyError:
            continue
        subprocess.run(["groupdel", group], check=False, capture_output=True)
