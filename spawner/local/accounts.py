"""Unix accounts for hub users and unix groups for workspaces (local runtime, needs root).

A hub user ``alice`` runs as ``<prefix>alice`` (:mod:`.names`; home ``state/users/alice/home``,
bound at ``/home/<account>`` inside environments); every
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
import logging
import os
import pwd
import weakref
from dataclasses import dataclass
from pathlib import Path


log = logging.getLogger(__name__)

#: account commands (useradd, groupadd, usermod) running at once in one hub
MAX_COMMANDS = 4
#: tries of a command that finds the password files locked by another program
LOCKED_TRIES = 5


class AccountError(RuntimeError):
    """A unix account or group could not be created."""


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

    async def ensure_user(self, name: str, home: Path, legacy: str | None = None,
                          groups: tuple[str, ...] = ()) -> Account:
        """The account ``name`` with its home folder ``home`` (on the host; environments see
        it as :func:`sandbox_home`). ``legacy``: the name an earlier release gave the same
        hub user; such an account is renamed (same uid, so its files stay its own) when its
        home is this user's. A new account is made a member of ``groups`` (which must exist)
        by the same ``useradd``: one command fewer per new user, and these commands run one
        at a time machine-wide."""
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            async with self._names(f"user:{name}"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    if not await self._migrate(legacy, name, home):
                        log.info("creating unix account %s (home %s)", name, home)
                        await self._useradd(name, groups)
                    pw = pwd.getpwnam(name)
        if pw.pw_dir != sandbox_home(name):
            async with self._names(f"user:{name}"):
                await self._run("usermod", "--home", sandbox_home(name), name)
            pw = pwd.getpwnam(name)
        home.parent.mkdir(parents=True, exist_ok=True)
        if not home.is_dir():
            home.mkdir(mode=0o700)
        st = os.lstat(home)
        if (st.st_uid, st.st_gid) != (pw.pw_uid, pw.pw_gid):
            os.chown(home, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        if st.st_mode & 0o7777 != 0o700:
            os.chmod(home, 0o700)
        return Account(name=name, uid=pw.pw_uid, gid=pw.pw_gid, home=str(home))

    async def _useradd(self, name: str, groups: tuple[str, ...]) -> None:
        # No subordinate uid/gid ranges (SUB_*_COUNT=0): environments never need them (under
        # no_new_privs the setuid newuidmap could not use them anyway, and without a range it
        # has nothing to grant), and writing /etc/subuid and /etc/subgid costs 10 of
        # useradd's 18 fsyncs, each a wait for the journal on a machine busy with a burst of
        # starting servers.
        argv = ["useradd", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0",
                "--home-dir", sandbox_home(name), "--no-create-home", "--shell", "/bin/bash",
                "--user-group", *(("--groups", ",".join(groups)) if groups else ()), name]
        try:
            await self._run(*argv)
        except AccountError:
            missing = [g for g in groups if not _group_exists(g)]
            if not missing:
                raise
            # a group was deleted meanwhile (its workspace removed): make it again, once
            for g in missing:
                await self.ensure_group(g)
            await self._run(*argv)

    async def _migrate(self, legacy: str | None, name: str, home: Path) -> bool:
        """Rename ``legacy`` to ``name`` if it is this user's account (its home was ``home``)."""
        if not legacy or legacy == name:
            return False
        try:
            old = pwd.getpwnam(legacy)
        except KeyError:
            return False
        if old.pw_dir != str(home):
            return False  # someone else's account (the collision the new names fix)
        log.info("renaming unix account %s to %s", legacy, name)
        await self._run("usermod", "--login", name, legacy)
        try:
            if grp.getgrnam(legacy).gr_gid == old.pw_gid:
                await self._run("groupmod", "--new-name", name, legacy)
        except KeyError:
            pass
        return True

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


    async def remove_member(self, group: str, user: str) -> bool:
        """Take ``user`` out of ``group`` (True if it was a member; missing ones are fine)."""
        try:
            if user not in grp.getgrnam(group).gr_mem:
                return False
        except KeyError:
            return False
        async with self._names(f"user:{user}"):
            if user in grp.getgrnam(group).gr_mem:
                await self._run("gpasswd", "--delete", user, group)
                return True
        return False

    async def remove_group(self, group: str) -> bool:
        """Delete a workspace's group (the workspace is gone)."""
        try:
            grp.getgrnam(group)
        except KeyError:
            return False
        async with self._names(f"group:{group}"):
            await self._run("groupdel", group)
        return True


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def sandbox_home(name: str) -> str:
    """Where an account's home folder appears inside its environments (and its passwd entry)."""
    return f"/home/{name}"


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
