"""SFTP and scp straight into a draft version of a dataset or model, no environment needed.

A login ``alice+dataset-3-1`` (or ``alice+model-7-2``) asks the data service whether alice
may write draft 1 of dataset 3 and where it lives; the session then serves asyncssh's
SFTP server (and its scp server, which rides on it) rooted at that folder. Nothing else is
offered: no shell, no commands, no forwarding.

Confinement: every client path is mapped into the draft and each component on the way is
checked not to be a link (the draft can hold none: links cannot be made here, uploads and
extraction refuse them), so nothing outside can be named. Files are written by the
gateway's own user, like the data service's browser uploads, so publishing and extraction
treat both alike; modes and owners sent by the client are ignored (no setuid files). No
account can reach a draft on disk (the state directory is root's), so nothing but this
code and the data service ever writes there, and neither makes links: the checked path is
the path used.

While the session is open it holds a shared lock on the draft's lock file; publishing takes
the same lock exclusively and is refused while any session holds it, so a published
version can never be written through a session opened on its draft. The kernel drops the
lock when the gateway dies, so a crash never blocks publishing.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import posixpath
import re
import stat
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import asyncssh
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHServerStreamSession

from gemhub.services.common.errors import BadRequest
from gemhub.services.data import files
from gemhub.services.data.client import DataError
from gemhub.services.data.names import check_file_name
from gemhub.spawner import layout

if TYPE_CHECKING:
    from .gateway import GatewayServer

_DRAFT_LOGIN = re.compile(r"(dataset|model)-([0-9]{1,12})-([0-9]{1,9})")
# private to the services, like everything in the state directory (published versions are
# made world-readable (0555/0444) by the data service, for the read-only mounts)
DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True)
class DraftTarget:
    kind: str  # "dataset" or "model"
    asset_id: int
    version: int

    @property
    def label(self) -> str:
        return f"{self.kind} {self.asset_id} version {self.version}"


def draft_target(server: str) -> DraftTarget | None:
    """``dataset-3-1`` -> DraftTarget("dataset", 3, 1); anything else is a server name (None).

    Server names of this exact form are reserved for drafts."""
    m = _DRAFT_LOGIN.fullmatch(server)
    if m is None:
        return None
    asset_id, version = int(m.group(2)), int(m.group(3))
    if asset_id < 1 or version < 1:
        return None
    return DraftTarget(m.group(1), asset_id, version)


class DraftLock:
    """A shared flock on the draft's lock file, held while a session writes the draft."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # closing drops the lock: on release, or when a session that never started is dropped
        self._close = weakref.finalize(self, os.close, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise

    def release(self) -> None:
        self._close()


def open_draft(folder: str, lock_path: str, label: str) -> DraftLock:
    """Lock the draft, then check it is (still) a draft folder; raises ValueError with the
    message for the person otherwise."""
    try:
        lock = DraftLock(lock_path)
    except BlockingIOError:
        raise ValueError(f"gemhub: {label} is being published right now; it can no longer change") from None
    except OSError as e:
        raise ValueError(f"gemhub: {label} cannot be opened ({e.strerror})") from None
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        lock.release()
        raise ValueError(f"gemhub: {label} has just been published or discarded; it can no longer change") \
            from None
    if not stat.S_ISDIR(st.st_mode):
        lock.release()
        raise ValueError(f"gemhub: {label} is not a folder on this machine; ask an administrator")
    return lock


def _refuse(message: str) -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied(message)


class DraftSFTPServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server confined to one draft folder (see the module docstring)."""

    def __init__(self, chan, folder: str):
        super().__init__(chan, chroot=folder.encode())
        self._root = os.path.realpath(folder).encode()

    def map_path(self, path: bytes) -> bytes:
        local = super().map_path(path)
        here = self._root
        for part in local[len(self._root):].split(b"/"):
            if not part:
                continue
            here = posixpath.join(here, part)
            try:
                mode = os.lstat(here).st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode):
                raise _refuse("links are not followed in a draft")
        return local

    def _check_name(self, path: bytes) -> None:
        """New names follow the draft's rules (1-64 characters, appendix A)."""
        name = posixpath.basename(posixpath.normpath(posixpath.join(b"/", path)))
        try:
            check_file_name(name.decode("utf-8", "strict"))
        except (UnicodeDecodeError, BadRequest) as e:
            raise _refuse(getattr(e, "message", "file names must be UTF-8")) from None

    def open(self, path, pflags, attrs):
        if pflags & asyncssh.FXF_CREAT and not os.path.lexists(self.map_path(path)):
            self._check_name(path)
        attrs.permissions = FILE_MODE
        attrs.uid = attrs.gid = None
        return super().open(path, pflags, attrs)

    def mkdir(self, path, attrs):
        self._check_name(path)
        return super().mkdir(path, asyncssh.SFTPAttrs(permissions=DIR_MODE))

    def _not_top(self, path: bytes) -> None:
        """The draft folder itself stays: the data service owns it."""
        if self.map_path(path).rstrip(b"/") == self._root:
            raise _refuse("the top folder of a draft cannot be removed or renamed")

    def rename(self, oldpath, newpath):
        self._not_top(oldpath)
        self._check_name(newpath)
        return super().rename(oldpath, newpath)

    def posix_rename(self, oldpath, newpath):
        self._not_top(oldpath)
        self._check_name(newpath)
        return super().posix_rename(oldpath, newpath)

    def rmdir(self, path):
        self._not_top(path)
        return super().rmdir(path)

    def remove(self, path):
        self._not_top(path)
        return super().remove(path)

    @staticmethod
    def _times_only(attrs: asyncssh.SFTPAttrs) -> asyncssh.SFTPAttrs:
        """Only times may change: the client's modes and owners are not taken over."""
        return asyncssh.SFTPAttrs(atime=attrs.atime, mtime=attrs.mtime) if attrs.mtime is not None \
            else asyncssh.SFTPAttrs()

    def setstat(self, path, attrs):
        return super().setstat(path, self._times_only(attrs))

    def lsetstat(self, path, attrs):
        return super().lsetstat(path, self._times_only(attrs))

    def fsetstat(self, file_obj, attrs):
        return super().fsetstat(file_obj, self._times_only(attrs))

    def exit(self):
        # OpenSSH's sshd reports sftp-server's exit status; scp (SFTP mode) fails without one
        if self.channel.get_subsystem() == "sftp":
            self.channel.exit(0)

    def symlink(self, oldpath, newpath):
        raise _refuse("links cannot be made in a draft")

    def link(self, oldpath, newpath):
        raise _refuse("links cannot be made in a draft")


def folder_of(answer: dict, state_dir: str, target: DraftTarget) -> tuple[str, str]:
    """(draft folder, lock file) from the data service's answer, which must be where the
    shared layout puts that draft: a wrong answer never opens another folder as root."""
    draft = layout.asset_draft_dir(state_dir, target.kind, target.asset_id, target.version)
    expected = (str(draft), str(files.lock_path(draft)))
    if (answer.get("path"), answer.get("lock")) != expected:
        raise ValueError("gemhub: the data service and the SSH gateway disagree about where this draft"
                         " lives; ask an administrator")
    return expected


class DraftSession(SSHServerStreamSession):
    """A session channel of a draft login: sftp and scp served in the draft, anything else
    answered with a message; ``on_close`` runs once when the channel goes."""

    def __init__(self, message: str, folder: str, on_close: Callable[[], None]):
        super().__init__(self._refuse, lambda chan: DraftSFTPServer(chan, folder), MIN_SFTP_VERSION,
                         allow_scp=True)
        self._message = message
        self._on_close: Callable[[], None] | None = on_close

    def _refuse(self, stdin, stdout, stderr):
        stderr.write(self._message.encode())
        stdout.channel.exit(1)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


async def open_draft_session(server: "GatewayServer") -> DraftSession:
    """Ask the data service whether the login's user may write the draft, lock it, and
    serve it; a refusal closes the channel with the reason (OpenSSH prints it)."""
    gateway, target, user = server.gateway, server.draft, server.user
    assert target is not None

    def refused(message: str) -> asyncssh.ChannelOpenError:
        gateway.record(user, "draft.refused", draft=target.label, reason=message, source=server.source)
        return asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, message)

    if gateway.data is None:
        raise refused("gemhub: SFTP into drafts is not available here (no data service)")
    try:
        answer = await gateway.data.sftp_target(user, target.kind, target.asset_id, target.version)
        folder, lock_file = folder_of(answer, gateway.state_dir, target)
        lock = await asyncio.get_running_loop().run_in_executor(None, open_draft, folder, lock_file, target.label)
    except DataError as e:
        raise refused(f"gemhub: {target.label}: {e.message}") from None
    except ValueError as e:
        raise refused(str(e)) from None
    except Exception:
        gateway.log.exception("SFTP login of %s into %s failed", user, target.label)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED,
                                        "gemhub: internal error in the SSH gateway") from None
    gateway.record(user, "session.draft", draft=target.label, source=server.source)
    watch = asyncio.ensure_future(_watch_access(server, target))

    def closed() -> None:
        watch.cancel()
        lock.release()
        gateway.in_background(_remeasure(server, target))

    message = (f"gemhub: this login only takes sftp and scp into {target.label}; for a shell log in as"
               f" {user}@ (your environment)\r\n")
    return DraftSession(message, folder, closed)


async def _watch_access(server: "GatewayServer", target: DraftTarget) -> None:
    """Close the connection once the user may no longer write the draft (removed from its
    workspace, the asset deleted or made read-only to them): access is asked again every
    ``draft_recheck_seconds``, so a removed member's session ends within that time."""
    gateway = server.gateway
    while True:
        await asyncio.sleep(gateway.draft_recheck_seconds)
        try:
            await gateway.data.sftp_target(server.user, target.kind, target.asset_id, target.version)
        except DataError as e:
            if e.status is not None and 400 <= e.status < 500:
                gateway.log.info("closing %s's SFTP session into %s: %s", server.user, target.label, e.message)
                gateway.record(server.user, "draft.revoked", draft=target.label, reason=e.message,
                               source=server.source)
                server.conn.close()
                return
            # the data service is unreachable right now: keep the session, ask again later


async def _remeasure(server: "GatewayServer", target: DraftTarget) -> None:
    """Best effort: the data service also re-measures drafts on its own schedule."""
    try:
        await server.gateway.data.sftp_closed(server.user, target.kind, target.asset_id, target.version)
    except DataError as e:
        server.gateway.log.info("re-measuring %s after SFTP: %s", target.label, e.message)
