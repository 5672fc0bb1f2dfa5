"""Unix accounts for hub users and unix groups for workspaces (local runtime, needs root).

A hub user ``alice`` runs as ``<prefix>alice`` (home ``state/users/alice/home``); every
member of workspace 7 is in group ``gemws-7``, which owns the workspace's project
directories with mode 2775 so members share code and outputs. ``useradd``/``groupadd``/
``usermod`` run only when something is missing: a spawn for a known user makes none.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import logging
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

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
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise AccountError(f"{' '.join(argv)} failed ({proc.returncode}): {out.decode(errors='replace').strip()}")


class Accounts:
    """Creates what is missing; one at a time (useradd locks /etc/passwd)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def ensure_user(self, name: str, home: Path) -> Account:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            async with self._lock:
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    home.parent.mkdir(parents=True, exist_ok=True)
                    log.info("creating unix account %s (home %s)", name, home)
                    await _run("useradd", "--home-dir", str(home), "--create-home",
                               "--shell", "/bin/bash", "--user-group", name)
                    pw = pwd.getpwnam(name)
        # The account may outlive a state directory: make sure its home exists here.
        if pw.pw_dir != str(home):
            async with self._lock:
                await _run("usermod", "--home", str(home), name)
            pw = pwd.getpwnam(name)
        if not home.is_dir():
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            home.chmod(0o750)
        return Account(name=name, uid=pw.pw_uid, gid=pw.pw_gid, home=str(home))

    async def ensure_member(self, group: str, user: str) -> int:
        """Create ``group`` if needed and add ``user`` to it; returns its gid."""
        try:
            gr = grp.getgrnam(group)
        except KeyError:
            async with self._lock:
                try:
                    gr = grp.getgrnam(group)
                except KeyError:
                    log.info("creating unix group %s", group)
                    await _run("groupadd", group)
                    gr = grp.getgrnam(group)
        if user not in gr.gr_mem:
            async with self._lock:
                if user not in grp.getgrnam(group).gr_mem:
                    await _run("usermod", "--append", "--groups", group, user)
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
