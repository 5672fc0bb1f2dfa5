"""Safe extraction of tar, tar.gz/bz2/xz, zip and rar archives into a draft (pure: no tornado).

The archive is listed and checked as a whole before a single byte is written:

- every member path is relative, has no ``..`` (nor ``.``-only) components, and every
  component is a valid file name (1-64 characters, no ``/``, appendix A);
- links are refused, symlinks and hard links alike, inside or outside: a published
  version is read by environments that must never be led anywhere else, and a link to
  a sibling is rare enough in datasets that a clear refusal beats a subtle rule;
- device nodes, FIFOs, sockets and encrypted members are refused;
- the same path twice (or a file where a folder is needed) is refused;
- caps: member count, total uncompressed size, and the compression ratio of the whole
  archive (zip bombs) once it is bigger than ``ratio_floor``.

An archive whose members all sit in one top folder (``sample/...``, as most zips made by
"compress this folder" do) is extracted as that folder, not into a second one named
after the archive (``sample/sample/...``); any other archive gets a new folder named
after it.

Extraction then streams each member into a hidden temporary folder inside the draft,
counting real bytes (headers can lie), and renames the folder into place only when
everything succeeded. On any refusal the temporary folder is removed: the draft is exactly
as it was, and :class:`ArchiveError` carries a machine ``reason`` and a human message.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from gemhub.services.common.errors import BadRequest

from .names import InvalidName, check_file_name

TEMP_PREFIX = ".gemhub-extract-"
SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip", ".rar")
COPY_BUFFER = 1 << 20


class ArchiveError(BadRequest):
    """The archive is refused; nothing was written. ``reason`` is a stable machine code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def to_json(self) -> dict:
        return {**super().to_json(), "reason": self.reason}


@dataclass(frozen=True)
class Limits:
    max_entries: int = 10_000
    max_total_bytes: int = 50 * 2**30
    max_ratio: float = 100.0
    ratio_floor: int = 16 * 2**20  # small archives of text compress well and are harmless


@dataclass(frozen=True)
class Entry:
    """One archive member as the archive describes it."""

    name: str
    kind: str  # file, dir, symlink, hardlink, device, fifo, encrypted, other
    size: int = 0
    link: str | None = None


@dataclass(frozen=True)
class Extracted:
    folder: str  # name of the new folder (inside the destination)
    files: int
    bytes: int


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def folder_name(archive_name: str) -> str:
    """``data.tar.gz`` -> ``data``: the folder an archive is extracted into."""
    lower = archive_name.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix) and len(archive_name) > len(suffix):
            return archive_name[: -len(suffix)]
    return archive_name + ".d"


def detect(path: str | os.PathLike) -> str:
    """``zip``, ``rar`` or ``tar`` (compressed or not), by content, never by name."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError):
        pass
    raise ArchiveError("not-an-archive", "this file is not a tar, tar.gz, zip or rar archive")


# -- listing ------------------------------------------------------------------------------
def _zip_entries(zf: zipfile.ZipFile) -> Iterator[tuple[Entry, zipfile.ZipInfo]]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if info.flag_bits & 0x1:
            kind = "encrypted"
        elif info.is_dir():
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind = "symlink"
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = "device"
        elif stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            kind = "fifo"
        else:
            kind = "file"
        link = zf.read(info).decode(errors="replace") if kind == "symlink" and info.file_size < 4096 else None
        yield Entry(info.filename, kind, info.file_size, link), info


def _tar_kind(m: tarfile.TarInfo) -> str:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.ischr() or m.isblk():
        return "device"
    if m.isfifo():
        return "fifo"
    return "other"


def _rar_kind(info) -> str:
    if info.needs_password():
        return "encrypted"
    if info.is_dir():
        return "dir"
    if info.is_symlink():
        return "symlink"
    if getattr(info, "file_redir", None):
        return "hardlink"
    return "file" if info.is_file() else "other"


# -- checking (pure) ----------------------------------------------------------------------
def _parts(name: str) -> list[str]:
    """Member path components after dropping ``./`` prefixes; refuses escapes and bad names."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise ArchiveError("absolute-path", f"{name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError("path-escape", f"{name!r} points outside the archive's folder ('..')")
    for p in parts:
        try:
            check_file_name(p)
        except InvalidName as e:
            raise ArchiveError("bad-name", f"{name[:80]!r}: {e.message}") from None
    return parts


_KIND_REASON = {
    "symlink": ("link", "is a symbolic link{to}; links are not allowed in archives"),
    "hardlink": ("link", "is a hard link{to}; links are not allowed in archives"),
    "device": ("special-file", "is a device node; only files and folders are allowed"),
    "fifo": ("special-file", "is a FIFO or socket; only files and folders are allowed"),
    "other": ("special-file", "is neither a file nor a folder"),
    "encrypted": ("encrypted", "is encrypted; encrypted archives are not supported"),
}


def check_entries(entries: list[Entry], archive_bytes: int, limits: Limits) -> list[tuple[list[str], Entry]]:
    """The members to extract with their path components, or :class:`ArchiveError`."""
    if len(entries) > limits.max_entries:
        raise ArchiveError("too-many-files",
                           f"the archive has more than {limits.max_entries} entries (the limit)")
    planned: list[tuple[list[str], Entry]] = []
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    total = 0
    for e in entries:
        if e.kind in _KIND_REASON:
            reason, text = _KIND_REASON[e.kind]
            to = f" to {e.link!r}" if e.link else ""
            raise ArchiveError(reason, f"{e.name!r} " + text.format(to=to))
        parts = _parts(e.name)
        if not parts:
            continue
        key = tuple(parts)
        for i in range(1, len(parts)):
            if key[:i] in files:
                raise ArchiveError("duplicate", f"{e.name!r} is inside {'/'.join(key[:i])!r}, which is a file")
        if e.kind == "dir":
            if key in files:
                raise ArchiveError("duplicate", f"{e.name!r} is both a file and a folder in the archive")
            dirs.add(key)
        else:
            if key in files or key in dirs:
                raise ArchiveError("duplicate", f"{e.name!r} appears more than once in the archive")
            files.add(key)
            total += max(e.size, 0)
        if total > limits.max_total_bytes:
            raise ArchiveError("too-big", f"the archive unpacks to more than {limits.max_total_bytes} bytes"
                                          " (the limit)")
        planned.append((parts, e))
    if total > limits.ratio_floor and total > limits.max_ratio * max(archive_bytes, 1):
        raise ArchiveError("compression-ratio",
                           f"the archive unpacks to {total} bytes from {archive_bytes}: a compression ratio"
                           f" over {limits.max_ratio:g} looks like a zip bomb")
    return planned


def single_top_folder(planned: list[tuple[list[str], Entry]]) -> str | None:
    """The one folder every member sits in, or None (several top entries, or a lone file)."""
    tops = {parts[0] for parts, _ in planned}
    if len(tops) != 1:
        return None
    if any(len(parts) > 1 or e.kind == "dir" for parts, e in planned):
        return tops.pop()
    return None


# -- extraction ---------------------------------------------------------------------------
def _copy(src: IO[bytes], dst: Path, declared: int, budget: list[int], name: str) -> int:
    written = 0
    with open(dst, "xb") as out:
        while True:
            buf = src.read(COPY_BUFFER)
            if not buf:
                break
            written += len(buf)
            budget[0] -= len(buf)
            if written > declared:
                raise ArchiveError("size-mismatch", f"{name!r} holds more data than its header declares")
            if budget[0] < 0:
                raise ArchiveError("too-big", "the archive unpacks to more than the size limit")
            out.write(buf)
    os.chmod(dst, 0o644)
    return written


def _open_members(path: Path, fmt: str, max_entries: int):
    """(entries, opener(entry_index) -> binary stream, closer)."""
    if fmt == "zip":
        zf = zipfile.ZipFile(path)
        pairs = list(_zip_entries(zf))
        return [e for e, _ in pairs], (lambda i: zf.open(pairs[i][1])), zf.close
    if fmt == "tar":
        tf = tarfile.open(path)
        members = []
        for m in tf:  # streams through compressed tars once; stops at the cap
            members.append(m)
            if len(members) > max_entries:
                break
        entries = [Entry(m.name, _tar_kind(m), m.size, m.linkname or None) for m in members]
        return entries, (lambda i: tf.extractfile(members[i])), tf.close
    import rarfile

    try:
        rf = rarfile.RarFile(str(path))
    except rarfile.Error as e:
        raise ArchiveError("corrupt", f"the rar archive cannot be read: {e}") from None
    infos = rf.infolist()
    entries = [Entry(i.filename, _rar_kind(i), i.file_size, None) for i in infos]
    return entries, (lambda i: rf.open(infos[i])), rf.close


def extract(archive: str | os.PathLike, dest: str | os.PathLike, limits: Limits = Limits(),
            folder: str | None = None, on_file: Callable[[int], None] | None = None) -> Extracted:
    """Extract ``archive`` into a new folder of ``dest``: ``folder``, else the archive's own
    single top folder, else one named after the archive (with ``-2``, ``-3``... when taken).
    Nothing in ``dest`` changes unless this returns."""
    archive, dest = Path(archive), Path(dest)
    fmt = detect(archive)
    try:
        entries, opener, close = _open_members(archive, fmt, limits.max_entries)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise ArchiveError("corrupt", f"the archive cannot be read: {e}") from None
    tmp = dest / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    try:
        planned = check_entries(entries, archive.stat().st_size, limits)
        top = single_top_folder(planned)
        if top is not None:  # its contents become the new folder's
            planned = [(parts[1:], e) for parts, e in planned if len(parts) > 1]
        index = {id(e): i for i, e in enumerate(entries)}
        tmp.mkdir(mode=0o755)
        budget = [limits.max_total_bytes]
        count = total = 0
        for parts, e in planned:
            target = tmp.joinpath(*parts)
            if e.kind == "dir":
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with opener(index[id(e)]) as src:
                total += _copy(src, target, e.size, budget, e.name)
            count += 1
            if on_file is not None:
                on_file(count)
        name = _free_name(dest, folder or top or folder_name(archive.name))
        os.rename(tmp, dest / name)
        return Extracted(folder=name, files=count, bytes=total)
    except ArchiveError:
        raise
    except Exception as e:  # a corrupt stream surfaces mid-way (zlib, CRC, rar tool errors)
        raise ArchiveError("corrupt", f"the archive cannot be extracted: {type(e).__name__}: {e}") from None
    finally:
        close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _free_name(dest: Path, wanted: str) -> str:
    try:
        check_file_name(wanted, "folder name")
    except InvalidName as e:
        raise ArchiveError("bad-name", e.message) from None
    if not (dest / wanted).exists() and not (dest / wanted).is_symlink():
        return wanted
    for n in range(2, 1000):
        suffix = f"-{n}"
        candidate = wanted[: 64 - len(suffix)] + suffix
        if not (dest / candidate).exists():
            return candidate
    raise ArchiveError("duplicate", f"too many folders named like {wanted!r} already")
