"""Resumable uploads on disk (no tornado, no database).

Protocol (handlers.py): create an upload with the file's size and sha256 -> PUT chunks at
the received offset -> GET the received offset after an interruption -> complete, which
verifies size and checksum and moves the file into the draft.

Each upload is ``state/uploads/<id>.part`` plus ``<id>.offset``: the acknowledged offset,
written and fsync'd *after* the chunk's data was fsync'd, so an acknowledged byte is never
lost and a byte past the offset (written but not acknowledged before a crash) is cut off
on the next read. A re-sent chunk is idempotent: bytes before the received offset are
skipped, only the rest is written. The sha256 is computed while chunks stream in order
(no re-reading per chunk); only after a restart mid-upload is the file hashed again, once,
when it completes.
"""

from __future__ import annotations

import ctypes
import datetime
import ctypes.util
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gemhub.services.common.errors import BadRequest, Conflict

_HASH_BUFFER = 4 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range():
    """Linux's sync_file_range(2), which Python's os module lacks; None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_SFR = _sync_file_range()


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file's dirty pages without waiting for them."""
    if _SFR is not None:
        _SFR(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


class UploadStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._hashers: dict[str, tuple[int, "hashlib._Hash"]] = {}
        self._busy: set[str] = set()
        self.completing: set[str] = set()

    def part(self, uid: str) -> Path:
        return self.root / f"{uid}.part"

    def _offset_file(self, uid: str) -> Path:
        return self.root / f"{uid}.offset"

    def create(self, uid: str) -> None:
        for p in (self.part(uid), self._offset_file(uid)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
        self._write_offset(uid, 0)
        self._hashers[uid] = (0, hashlib.sha256())

    def received(self, uid: str) -> int:
        """The acknowledged offset (unacknowledged tail bytes are cut off)."""
        try:
            acked = int(self._offset_file(uid).read_text() or 0)
        except (FileNotFoundError, ValueError):
            acked = 0
        part = self.part(uid)
        size = part.stat().st_size if part.exists() else 0
        if size > acked:
            os.truncate(part, acked)
        return min(acked, size)

    def last_activity(self, uid: str) -> float:
        """When the upload last received a chunk (epoch seconds; 0 when its files are gone)."""
        try:
            return self._offset_file(uid).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def is_stale(self, uid: str, created: datetime.datetime, cutoff: float) -> bool:
        """Whether an open upload has had no activity since ``cutoff`` (epoch seconds).

        Its files alone cannot say: they do not exist yet while the upload is being created
        and no longer exist once ``complete`` has moved them into the draft (the database
        row still says open until that request commits). An upload being completed, or
        created after the cutoff, is never stale.
        """
        if uid in self.completing:
            return False
        if created.tzinfo is None:  # SQLite hands back naive UTC
            created = created.replace(tzinfo=datetime.timezone.utc)
        return max(self.last_activity(uid), created.timestamp()) < cutoff

    def _write_offset(self, uid: str, offset: int) -> None:
        fd = os.open(self._offset_file(uid), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            text = str(offset).encode().ljust(20)  # fixed width: one in-place write, no rename
            os.pwrite(fd, text, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def writer(self, uid: str, offset: int, length: int, size: int) -> "ChunkWriter":
        """A writer for a chunk of ``length`` bytes the client sends for ``offset``."""
        if uid in self._busy:
            raise Conflict("another chunk of this upload is being written; retry when it is done")
        received = self.received(uid)
        if offset > received:
            raise Conflict(f"chunk offset {offset} is past the received offset {received}; "
                           f"send from {received}")
        if offset + length > size:
            raise BadRequest(f"the chunk ends at {offset + length}, past the file's declared size {size}")
        hashed = self._hashers.get(uid)
        hasher = hashed[1] if hashed is not None and hashed[0] == received else None
        if hasher is None:
            self._hashers.pop(uid, None)
        self._busy.add(uid)
        return ChunkWriter(self, uid, received, skip=received - offset, hasher=hasher)

    def _finished(self, uid: str, offset: int, hasher) -> None:
        self._busy.discard(uid)
        if hasher is not None:
            self._hashers[uid] = (offset, hasher)

    def sha256(self, uid: str, size: int) -> str:
        """The file's sha256: from the streaming hash, else by reading the file once."""
        hashed = self._hashers.get(uid)
        if hashed is not None and hashed[0] == size:
            return hashed[1].hexdigest()
        h = hashlib.sha256()
        with open(self.part(uid), "rb") as f:
            while buf := f.read(_HASH_BUFFER):
                h.update(buf)
        return h.hexdigest()

    def reset(self, uid: str) -> None:
        """Start over (after a checksum mismatch)."""
        self.create(uid)

    def discard(self, uid: str) -> None:
        self._hashers.pop(uid, None)
        for p in (self.part(uid), self._offset_file(uid)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def move_into(self, uid: str, target: Path) -> None:
        """Move the finished file into the draft (same filesystem: a rename)."""
        os.chmod(self.part(uid), 0o644)
        os.rename(self.part(uid), target)
        self.discard(uid)


class ChunkWriter:
    """Receives one chunk's bytes (streamed), then :meth:`commit` makes them durable.

    Bytes are gathered into ~1 MiB pieces and written and hashed by a thread of their own
    (both release the GIL), so receiving the next piece on the event loop overlaps with
    writing the previous one; at most one chunk is ever held in memory.
    """

    PIECE = 1 << 20
    START_WRITEBACK = 8 << 20  # start writing back while the rest arrives: commit's fsync stays short

    def __init__(self, store: UploadStore, uid: str, start: int, skip: int, hasher):
        self.store = store
        self.uid = uid
        self.offset = start
        self.skip = skip
        self.hasher = hasher
        self.fd = os.open(store.part(uid), os.O_WRONLY)
        os.lseek(self.fd, start, os.SEEK_SET)
        self._pieces: list[bytes] = []
        self._pending = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"upload-{uid[:8]}")
        self._failed: BaseException | None = None
        self._unsynced = 0

    def write(self, data: bytes) -> None:
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                return
            data = data[self.skip:]
            self.skip = 0
        self._pieces.append(data)
        self._pending += len(data)
        self.offset += len(data)
        if self._pending >= self.PIECE:
            self._flush()

    def _flush(self) -> None:
        if self._pieces:
            pieces, self._pieces, self._pending = self._pieces, [], 0
            self._thread.submit(self._write_pieces, pieces)

    def _write_pieces(self, pieces: list[bytes]) -> None:
        if self._failed is not None:
            return
        try:
            total = sum(len(p) for p in pieces)
            done = os.writev(self.fd, pieces)
            if done < total:  # a short write: the rest one by one
                rest = memoryview(b"".join(pieces))[done:]
                while rest:
                    rest = rest[os.write(self.fd, rest):]
            if self.hasher is not None:
                for piece in pieces:
                    self.hasher.update(piece)
            self._unsynced += total
            if self._unsynced >= self.START_WRITEBACK:
                _start_writeback(self.fd)
                self._unsynced = 0
        except BaseException as e:  # reported by commit()
            self._failed = e

    def commit(self) -> int:
        """Finish writing, fsync the data, then record the new offset (blocking: run it off
        the event loop)."""
        try:
            self._flush()
            self._thread.shutdown(wait=True)
            if self._failed is not None:
                raise self._failed
            os.fsync(self.fd)
            self.store._write_offset(self.uid, self.offset)
        except BaseException:
            self.abort()
            raise
        self.close()
        return self.offset

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.store._finished(self.uid, self.offset, self.hasher)

    def abort(self) -> None:
        """The chunk did not arrive whole: drop the unacknowledged bytes and the hash."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.store._busy.discard(self.uid)
            self.store._hashers.pop(self.uid, None)
            self.store.received(self.uid)
