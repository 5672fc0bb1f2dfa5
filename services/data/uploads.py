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

Chunks may be pipelined: the next chunk (from the end of the one before) is accepted as
soon as the one before has arrived whole, while that one is still being made durable, so
a client need not sit idle during each sync. One thread per upload writes and hashes the
bytes in order, another makes chunks durable in order (data fsync, then the offset): a
chunk is acknowledged only when it and every chunk before it are on disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import hashlib
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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


_IOV_BATCH = 512  # pwritev takes at most IOV_MAX (1024 on Linux) buffers


def _pwrite_all(fd: int, pieces: list[bytes], position: int) -> int:
    """Write ``pieces`` at ``position``, all of them (short writes retried); the byte count."""
    written = 0
    for i in range(0, len(pieces), _IOV_BATCH):
        batch = pieces[i:i + _IOV_BATCH]
        size = sum(len(p) for p in batch)
        done = os.pwritev(fd, batch, position + written)
        if done < size:  # a short write: the rest in one buffer
            rest = memoryview(b"".join(batch))[done:]
            while rest:
                n = os.pwrite(fd, rest, position + written + done)
                rest, done = rest[n:], done + n
        written += size
    return written


class UploadStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._hashers: dict[str, tuple[int, "hashlib._Hash"]] = {}
        self._streams: dict[str, _Stream] = {}  # uploads with a chunk arriving or being made durable
        self._announced: dict[str, list[Announced]] = {}  # chunk requests seen, bodies not in yet
        self._lock = threading.Lock()
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

    def _acked(self, uid: str) -> int:
        try:
            return int(self._offset_file(uid).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def received(self, uid: str) -> int:
        """The acknowledged offset (unacknowledged tail bytes are cut off, unless chunks of
        the upload are in flight: then the file is left alone)."""
        acked = self._acked(uid)
        if uid in self._streams:
            return acked
        part = self.part(uid)
        size = part.stat().st_size if part.exists() else 0
        if size > acked:
            os.truncate(part, acked)
        return min(acked, size)

    def busy(self, uid: str) -> bool:
        """Whether a chunk of the upload is arriving or being made durable."""
        return uid in self._streams

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
        receiving chunks, or created after the cutoff, is never stale.
        """
        if uid in self.completing or uid in self._streams:
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

    def announce(self, uid: str, offset: int, length: int) -> "Announced":
        """A chunk request for ``offset`` has come in (its body has not been read yet)."""
        a = Announced(offset, offset + length)
        self._announced.setdefault(uid, []).append(a)

        def forget(_):
            left = [x for x in self._announced.get(uid, []) if x is not a]
            if left:
                self._announced[uid] = left
            else:
                self._announced.pop(uid, None)

        a.done.add_done_callback(forget)
        return a

    def predecessor(self, uid: str, offset: int) -> "Future | None":
        """Done when the chunk that ends at ``offset`` is in whole or dropped, if its request
        has come in and its body has not: a client pipelining its chunks sends the next one
        before the one before is answered, and that one waits for it."""
        for a in self._announced.get(uid, []):
            if a.end == offset and a.start < offset and not a.done.done():
                return a.done
        return None

    def writer(self, uid: str, offset: int, length: int, size: int,
               announced: "Announced | None" = None) -> "ChunkWriter":
        """A writer for a chunk of ``length`` bytes the client sends for ``offset``."""
        with self._lock:
            stream = self._streams.get(uid)
            if stream is not None and stream.receiving is not None:
                raise Conflict("another chunk of this upload is being written; retry when it is done")
            base = stream.end if stream is not None else self.received(uid)
            if offset > base:
                raise Conflict(f"chunk offset {offset} is past the received offset {base}; send from {base}")
            if offset + length > size:
                raise BadRequest(f"the chunk ends at {offset + length}, past the file's declared size {size}")
            if stream is None:
                hashed = self._hashers.pop(uid, None)
                stream = _Stream(self.part(uid), uid, base, hashed[1] if hashed and hashed[0] == base else None)
                self._streams[uid] = stream
            stream.receiving = ChunkWriter(self, stream, base, skip=base - offset,
                                           announced=announced or Announced(offset, offset + length))
            return stream.receiving

    def _settle(self, stream: "_Stream") -> None:
        """Close the upload's stream once nothing of it is in flight; keep its hash."""
        with self._lock:
            if stream.receiving is not None or stream.pending or self._streams.get(stream.uid) is not stream:
                return
            del self._streams[stream.uid]
        stream.close()
        if stream.hasher is not None and stream.failed is None:
            self._hashers[stream.uid] = (stream.end, stream.hasher)
        self.received(stream.uid)  # cuts off what was written but never acknowledged

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


class Announced:
    """A chunk whose request came in: the bytes it covers, and a future that is done (True:
    it arrived whole; False: it was dropped or refused) when its body is over."""

    def __init__(self, start: int, end: int):
        self.start, self.end = start, end
        self.done: Future = Future()

    def finish(self, whole: bool) -> None:
        if not self.done.done():
            self.done.set_result(whole)


class _Stream:
    """One upload's chunks in flight. ``writes`` writes and hashes the bytes in the order they
    arrived; ``syncs`` makes chunks durable in order. Their state is changed under the
    store's lock (the event loop) or by the one thread that owns it."""

    def __init__(self, part: Path, uid: str, start: int, hasher):
        self.uid = uid
        self.fd = os.open(part, os.O_WRONLY)
        self.writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"upload-{uid[:8]}-write")
        self.syncs = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"upload-{uid[:8]}-sync")
        self.end = start  # where the next chunk starts: the end of the last one that arrived whole
        self.receiving: ChunkWriter | None = None
        self.pending = 0  # chunks that arrived whole and are not durable yet
        self.hasher = hasher  # None: the file is hashed again when it completes
        self.failed: BaseException | None = None
        self.unsynced = 0
        self.rollback: ChunkWriter | None = None  # an aborted chunk whose hash is not undone yet

    def close(self) -> None:
        """Only the bytes of an aborted chunk can still be queued: they are dropped, and the
        hash is put back to where that chunk started."""
        self.writes.shutdown(wait=True, cancel_futures=True)
        self.syncs.shutdown(wait=True)
        os.close(self.fd)
        if self.rollback is not None and self.rollback.snapshot_taken:
            self.hasher = self.rollback.snapshot


class ChunkWriter:
    """Receives one chunk's bytes (streamed); :meth:`arrived_whole` then makes them durable.

    Bytes are gathered into ~1 MiB pieces and written and hashed by the upload's write
    thread (both release the GIL), so receiving the next piece on the event loop overlaps
    with writing the previous one. :meth:`write` hands back a future to wait for when more
    than ``QUEUED`` bytes are waiting to be written (the disk or the CPU lags the network),
    so an upload never holds more than that in memory.
    """

    PIECE = 1 << 20
    QUEUED = 16 << 20
    START_WRITEBACK = 8 << 20  # start writing back while the rest arrives: the sync stays short

    def __init__(self, store: UploadStore, stream: _Stream, start: int, skip: int, announced: Announced):
        self.store = store
        self.stream = stream
        self.uid = stream.uid
        self.offset = start  # where the next byte goes
        self.skip = skip
        self.announced = announced
        self._pieces: list[bytes] = []
        self._pending = 0
        self._queued: deque[tuple[Future, int]] = deque()
        self.snapshot, self.snapshot_taken = None, False
        stream.writes.submit(self._take_snapshot)  # the hash as it is when this chunk starts

    def write(self, data: bytes) -> Future | None:
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                return None
            data = data[self.skip:]
            self.skip = 0
        self._pieces.append(data)
        self._pending += len(data)
        if self._pending >= self.PIECE:
            self._flush()
        while self._queued and self._queued[0][0].done():
            self._queued.popleft()
        if sum(n for _, n in self._queued) > self.QUEUED:
            return self._queued[0][0]
        return None

    def _flush(self) -> None:
        if self._pieces:
            pieces, self._pieces, self._pending = self._pieces, [], 0
            size = sum(len(p) for p in pieces)
            self._queued.append((self.stream.writes.submit(self._write_pieces, pieces, self.offset), size))
            self.offset += size

    def _take_snapshot(self) -> None:
        self.snapshot = self.stream.hasher.copy() if self.stream.hasher is not None else None
        self.snapshot_taken = True

    def _write_pieces(self, pieces: list[bytes], position: int) -> None:
        s = self.stream
        if s.failed is not None:
            return
        try:
            total = _pwrite_all(s.fd, pieces, position)
            if s.hasher is not None:
                for piece in pieces:
                    s.hasher.update(piece)
            s.unsynced += total
            if s.unsynced >= self.START_WRITEBACK:
                _start_writeback(s.fd)
                s.unsynced = 0
        except BaseException as e:  # reported by the sync of this chunk
            s.failed = e

    def arrived_whole(self) -> Future:
        """The body is in: the next chunk may start arriving. The future gives the new
        acknowledged offset once this chunk and all before it are on disk."""
        self._flush()
        s = self.stream
        with self.store._lock:
            s.receiving = None
            s.end = self.offset
            s.pending += 1
        self.announced.finish(True)
        written = s.writes.submit(lambda: None)  # done when this chunk's bytes are written
        return s.syncs.submit(self._make_durable, written, self.offset)

    def _make_durable(self, written: Future, end: int) -> int:
        s = self.stream
        written.result()
        if s.failed is not None:  # this chunk's write, or an earlier chunk's sync, failed
            raise s.failed
        try:
            os.fsync(s.fd)
            self.store._write_offset(self.uid, end)
        except BaseException as e:
            s.failed = e
            raise
        return end

    def settle(self) -> None:
        """After the future of :meth:`arrived_whole` is done (either way)."""
        with self.store._lock:
            self.stream.pending -= 1
        self.store._settle(self.stream)

    def commit(self) -> int:
        """Make the chunk durable and wait for it (blocking)."""
        try:
            return self.arrived_whole().result()
        finally:
            self.settle()

    def abort(self) -> None:
        """The chunk did not arrive whole: its bytes are not acknowledged, and the hash goes
        back to where this chunk started."""
        s = self.stream
        self._pieces, self._pending = [], 0
        with self.store._lock:
            if s.receiving is self:
                s.receiving = None
            s.rollback = self

        def restore():  # in the write thread, after this chunk's queued bytes
            s.hasher, s.rollback = self.snapshot, None

        s.writes.submit(restore)
        self.announced.finish(False)
        self.store._settle(s)
