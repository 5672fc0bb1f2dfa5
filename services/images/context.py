"""A build context assembled from a project's code folder (``/gemini/code``).

Only the sources that COPY/ADD name are copied, into a fresh root-only folder. The code
folder is writable by the project's users, so root never follows a path there: every
step opens the next component relative to its parent's descriptor with ``O_NOFOLLOW``,
and what was opened is checked with ``fstat``. Links (symbolic, or a file with a second
hard link) and special files are refused with their path; so is anything over the size
and file-count limits. Glob characters (``*?[``) in a source match within one folder,
as Docker's COPY does.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from gemhub.services.common.errors import BadRequest

GLOB = "*?["
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class ContextError(BadRequest):
    """A source cannot go into the build context (HTTP 400)."""


@dataclass
class Limits:
    max_bytes: int = 2 * 10**9
    max_files: int = 20_000


@dataclass
class Copied:
    files: int = 0
    bytes: int = 0


def _refuse_link(rel: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise ContextError(f"{rel!r} is a symbolic link; links are refused in a build context (copy the file)")
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise ContextError(f"{rel!r} has {st.st_nlink} hard links; links are refused in a build context")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise ContextError(f"{rel!r} is not a regular file or folder")


class _Copier:
    def __init__(self, dest: Path, limits: Limits):
        self.dest = dest
        self.limits = limits
        self.done = Copied()

    def _count(self, size: int, rel: str) -> None:
        self.done.files += 1
        self.done.bytes += size
        if self.done.files > self.limits.max_files:
            raise ContextError(f"the sources hold more than {self.limits.max_files} files (at {rel!r})")
        if self.done.bytes > self.limits.max_bytes:
            raise ContextError(f"the sources hold more than {self.limits.max_bytes} bytes (at {rel!r})")

    def file(self, parent_fd: int, name: str, rel: str) -> None:
        try:
            fd = os.open(name, O_FILE, dir_fd=parent_fd)
        except OSError as e:
            if e.errno == 40:  # ELOOP: a symbolic link
                raise ContextError(f"{rel!r} is a symbolic link; links are refused in a build context") from None
            raise ContextError(f"cannot read {rel!r}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            _refuse_link(rel, st)
            self._count(st.st_size, rel)
            target = self.dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.set_blocking(fd, True)
            with os.fdopen(os.dup(fd), "rb") as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(target, stat.S_IMODE(st.st_mode) & 0o777)
        finally:
            os.close(fd)

    def tree(self, fd: int, rel: str) -> None:
        (self.dest / rel).mkdir(parents=True, exist_ok=True)
        for entry in sorted(os.listdir(fd)):
            child = f"{rel}/{entry}" if rel != "." else entry
            st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            _refuse_link(child, st)
            if stat.S_ISDIR(st.st_mode):
                sub = self.open_dir(fd, entry, child)
                try:
                    self.tree(sub, child)
                finally:
                    os.close(sub)
            else:
                self.file(fd, entry, child)

    @staticmethod
    def open_dir(parent_fd: int, name: str, rel: str) -> int:
        try:
            return os.open(name, O_DIR, dir_fd=parent_fd)
        except NotADirectoryError:
            raise ContextError(f"{rel!r} is not a folder") from None
        except OSError as e:
            if e.errno == 40:
                raise ContextError(f"{rel!r} is a symbolic link; links are refused in a build context") from None
            raise ContextError(f"cannot open {rel!r}: {e.strerror}") from None

    def source(self, root_fd: int, parts: list[str], prefix: str = "") -> int:
        """Copy what ``parts`` names below ``root_fd``; returns how many paths matched."""
        if not parts:
            self.tree(root_fd, prefix or ".")
            return 1
        head, rest = parts[0], parts[1:]
        names = sorted(n for n in os.listdir(root_fd) if fnmatch.fnmatchcase(n, head)) \
            if any(c in head for c in GLOB) else [head]
        matched = 0
        for name in names:
            rel = f"{prefix}/{name}" if prefix else name
            try:
                st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            _refuse_link(rel, st)
            if stat.S_ISDIR(st.st_mode):
                fd = self.open_dir(root_fd, name, rel)
                try:
                    matched += self.source(fd, rest, rel)
                finally:
                    os.close(fd)
            elif not rest:
                self.file(root_fd, name, rel)
                matched += 1
        return matched


def assemble(code_dir: str | os.PathLike, sources: tuple[str, ...] | list[str], dest: str | os.PathLike,
             limits: Limits | None = None) -> Copied:
    """Copy ``sources`` (normalised relative paths, from :mod:`policy`) from ``code_dir``
    into the new folder ``dest``. On any refusal ``dest`` is removed and ContextError raised."""
    dest = Path(dest)
    dest.mkdir(mode=0o700, parents=True, exist_ok=False)
    copier = _Copier(dest, limits or Limits())
    try:
        if not sources:
            return copier.done
        try:
            root_fd = os.open(os.fspath(code_dir), O_DIR)
        except OSError as e:
            raise ContextError(f"the project's code folder cannot be read ({e.strerror})") from None
        try:
            for source in sources:
                parts = [] if source in (".", "") else source.split("/")
                if copier.source(root_fd, parts) == 0:
                    raise ContextError(f"COPY/ADD source {source!r} is not in the project's code folder")
        finally:
            os.close(root_fd)
        return copier.done
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
