"""Files of a version on disk (no tornado, no database): the draft file browser, publishing,
and copying a project's output into a new version.

A draft lives in ``state/<kind>s/<id>/drafts/<n>/`` and is published by renaming it to
``state/<kind>s/<id>/<n>/`` (same filesystem: atomic) and making the whole tree read-only
(folders 0555, files 0444, owned by the service's user): environments read it through a
read-only bind mount and cannot write it even without one. Paths are checked component by
component (names.py) and never followed through a symlink, so a request cannot leave its
draft even if something (an SFTP client) put a link there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from gemhub.services.common.errors import BadRequest, Conflict, NotFound

from .archives import TEMP_PREFIX
from .names import check_file_name, split_path

HIDDEN_PREFIXES = (TEMP_PREFIX,)


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int


def locate(root: Path, path: str, allow_root: bool = False, must_exist: bool = True) -> Path:
    """``root/path`` after checking every component; refuses symlinks on the way."""
    parts = split_path(path, allow_root=allow_root)
    here = root
    for i, part in enumerate(parts):
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            if must_exist or i < len(parts) - 1:
                raise NotFound(f"{'/'.join(parts[:i + 1])!r} does not exist") from None
            return here
        if stat.S_ISLNK(st.st_mode):
            raise BadRequest(f"{'/'.join(parts[:i + 1])!r} is a link; links are not followed")
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            raise BadRequest(f"{'/'.join(parts[:i + 1])!r} is a file, not a folder")
    return here


def listing(root: Path, path: str = "") -> list[dict]:
    """Entries of a folder: name, type (file/dir), size, modified (epoch seconds)."""
    folder = locate(root, path, allow_root=True)
    if not folder.is_dir():
        raise BadRequest(f"{path!r} is a file, not a folder")
    out = []
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith(HIDDEN_PREFIXES):
                continue
            st = e.stat(follow_symlinks=False)
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
            out.append({"name": e.name, "type": kind, "size": st.st_size if kind == "file" else None,
                        "modified": int(st.st_mtime)})
    out.sort(key=lambda x: (x["type"] != "dir", x["name"]))
    return out


def usage(path: Path) -> Usage:
    """Files and bytes under ``path`` (a file or a folder), never following links."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return Usage(1, st.st_size) if stat.S_ISREG(st.st_mode) else Usage(0, 0)
    files = size = 0
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            s = os.lstat(os.path.join(dirpath, n))
            if stat.S_ISREG(s.st_mode):
                files += 1
                size += s.st_size
    return Usage(files, size)


def mkdir(root: Path, path: str) -> Path:
    target = locate(root, path, must_exist=False)
    if target.exists():
        raise Conflict(f"{path.strip('/')!r} already exists")
    target.mkdir(mode=0o755)
    return target


def rename(root: Path, path: str, new_name: object) -> Path:
    """Rename a file or folder within its folder (``new_name`` is a name, not a path)."""
    src = locate(root, path)
    name = check_file_name(new_name, "new name")
    dst = src.parent / name
    if dst.exists() or dst.is_symlink():
        raise Conflict(f"{name!r} already exists in that folder")
    os.rename(src, dst)
    return dst


def delete(root: Path, path: str) -> Usage:
    """Remove a file or a folder tree; returns what it held (for the storage counters)."""
    target = locate(root, path)
    held = usage(target)
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    return held


def remove_tree(path: Path) -> None:
    """Remove a draft or an unpublished asset's folder (gone already is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)


def make_draft(draft: Path) -> None:
    """A new, empty draft folder: anything left at that place (a crash mid-copy) goes first."""
    remove_tree(draft)
    draft.mkdir(mode=0o755, parents=True)
    for p in (draft.parent, draft.parent.parent, draft.parent.parent.parent):
        os.chmod(p, 0o755)


def finish_publish(path: Path) -> None:
    """Make a published version's tree read-only for everyone (idempotent: recovery runs it
    again on a folder a crash left half done)."""
    for dirpath, dirs, names in os.walk(path):
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o444)
        os.chmod(dirpath, 0o555)


def drop_leftovers(draft: Path) -> None:
    """Remove temporary extraction folders left by a crash (the caller holds the draft, so
    no extraction is running): they are never published nor counted."""
    for leftover in list(draft.glob(f"**/{TEMP_PREFIX}*")):
        shutil.rmtree(leftover, ignore_errors=True)


def lock_path(draft: Path) -> Path:
    """The lock file an SFTP session into the draft holds shared (services/ssh/drafts.py);
    kept next to the draft, never removed (a removed lock file would split the lock)."""
    return draft.parent / f"{draft.name}.lock"


@contextlib.contextmanager
def no_sftp_sessions(draft: Path, doing: str = "publish"):
    """Hold the draft's lock exclusively: Conflict while an SFTP session has it open, which
    could otherwise go on writing into the version after it is published (or discarded)."""
    fd = os.open(lock_path(draft), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(f"an SFTP session into this draft is open; close it, then {doing}") from None
        yield
    finally:
        os.close(fd)


def publish(draft: Path, final: Path) -> None:
    """Rename the draft into its published place and make it read-only for everyone."""
    drop_leftovers(draft)
    for dirpath, dirs, names in os.walk(draft):
        for n in dirs + names:  # SFTP may have put anything in a draft
            p = os.path.join(dirpath, n)
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                what = "a link" if stat.S_ISLNK(mode) else "not a regular file or folder"
                raise BadRequest(f"{os.path.relpath(p, draft)!r} is {what}; remove it before publishing")
    if final.exists():
        raise Conflict(f"version folder {final.name} already exists")
    os.rename(draft, final)
    finish_publish(final)


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_COPY_CHUNK = 1 << 20


def copy_out(root: Path, path: str, dest: Path) -> Usage:
    """Copy ``root/path`` (a project's output: a tree the workspace's members write while
    we read) into ``dest/<name>`` with the draft's rules: names 1-64 characters, no links,
    no special files.

    Root never follows a path a user can write: every step is an ``openat`` relative to the
    folder opened before it, with ``O_NOFOLLOW``, and each file is checked on the descriptor
    that is then read (``fstat``), so a file swapped for a link, a folder for a link or a
    FIFO meanwhile fails the copy instead of making root read something else. ``dest`` must
    not exist; it is removed again on any failure.
    """
    parts = split_path(path)
    if dest.exists() or dest.is_symlink():
        raise Conflict(f"{dest.name!r} is in use; try again")
    fd = _open_dir(str(root), None, "the project's output")
    try:
        for i, part in enumerate(parts[:-1]):
            fd = _descend(fd, part, "/".join(parts[:i + 1]))
        dest.mkdir(mode=0o700, parents=True)
        try:
            return _copy_entry(fd, parts[-1], dest, parts[-1])
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    finally:
        os.close(fd)


def _open_dir(name: str, dir_fd: int | None, shown: str) -> int:
    try:
        return os.open(name, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=dir_fd)
    except FileNotFoundError:
        raise NotFound(f"{shown!r} does not exist in the project's output") from None
    except OSError as e:  # ELOOP: a link; ENOTDIR: a file
        raise BadRequest(f"{shown!r} is not a folder (links are not followed): {e.strerror}") from None


def _descend(fd: int, name: str, shown: str) -> int:
    try:
        return _open_dir(name, fd, shown)
    finally:
        os.close(fd)


def _copy_entry(dir_fd: int, name: str, dest: Path, shown: str) -> Usage:
    check_file_name(name, f"name of {shown!r}")
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise NotFound(f"{shown!r} does not exist in the project's output") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadRequest(f"{shown!r} is a link; links are not copied") from None
        raise BadRequest(f"{shown!r} cannot be read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        target = dest / name
        if stat.S_ISDIR(st.st_mode):
            target.mkdir(mode=0o755)
            total = Usage(0, 0)
            for entry in sorted(os.listdir(fd)):
                got = _copy_entry(fd, entry, target, f"{shown}/{entry}")
                total = Usage(total.files + got.files, total.bytes + got.bytes)
            return total
        if not stat.S_ISREG(st.st_mode):
            raise BadRequest(f"{shown!r} is not a regular file or folder")
        size = 0
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            while chunk := os.read(fd, _COPY_CHUNK):
                os.write(out, chunk)
                size += len(chunk)
        finally:
            os.close(out)
        return Usage(1, size)
    finally:
        os.close(fd)
