"""The resumable upload store: acknowledged bytes survive, re-sends are idempotent, the
unacknowledged tail is cut, the checksum is streamed or recomputed once."""

from __future__ import annotations

import datetime
import hashlib
import os

import pytest

from gemhub.services.common.errors import BadRequest, Conflict
from gemhub.services.data.uploads import ChunkWriter, UploadStore

DATA = os.urandom(3 * 2**20 + 7)
SHA = hashlib.sha256(DATA).hexdigest()


def send(store: UploadStore, uid: str, offset: int, data: bytes, pieces: int = 3) -> int:
    w = store.writer(uid, offset, len(data), len(DATA))
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        w.write(data[i:i + step])
    return w.commit()


def test_chunks_in_order_resend_and_streamed_hash(tmp_path):
    store = UploadStore(tmp_path)
    store.create("u1")
    assert send(store, "u1", 0, DATA[:2**20]) == 2**20
    # the same chunk again (the answer was lost): nothing changes
    assert send(store, "u1", 0, DATA[:2**20]) == 2**20
    # an overlapping chunk: only the new part is written
    assert send(store, "u1", 2**19, DATA[2**19:2 * 2**20]) == 2 * 2**20
    assert send(store, "u1", 2 * 2**20, DATA[2 * 2**20:]) == len(DATA)
    assert store.sha256("u1", len(DATA)) == SHA
    assert store.part("u1").read_bytes() == DATA


def test_refusals(tmp_path):
    store = UploadStore(tmp_path)
    store.create("u2")
    with pytest.raises(Conflict, match="send from 0"):
        store.writer("u2", 10, 5, len(DATA))
    with pytest.raises(BadRequest, match="past the file's declared size"):
        store.writer("u2", 0, len(DATA) + 1, len(DATA))
    w = store.writer("u2", 0, 5, len(DATA))
    with pytest.raises(Conflict, match="being written"):
        store.writer("u2", 0, 5, len(DATA))
    w.abort()
    assert store.received("u2") == 0


def test_crash_keeps_acknowledged_bytes_only(tmp_path):
    store = UploadStore(tmp_path)
    store.create("u3")
    send(store, "u3", 0, DATA[:2**20])
    # bytes that reached the file but were never acknowledged (a crash mid-chunk)
    with open(store.part("u3"), "ab") as f:
        f.write(b"garbage")
    fresh = UploadStore(tmp_path)  # a restarted service: no streamed hash in memory
    assert fresh.received("u3") == 2**20
    assert store.part("u3").stat().st_size == 2**20
    send(fresh, "u3", 2**20, DATA[2**20:])
    assert fresh.sha256("u3", len(DATA)) == SHA  # recomputed once from the file


def test_interrupted_chunk_is_dropped(tmp_path):
    store = UploadStore(tmp_path)
    store.create("u4")
    w = store.writer("u4", 0, 2**20, len(DATA))
    w.write(DATA[: 2**19])
    w.abort()  # the client went away half-way through the chunk
    assert store.received("u4") == 0
    assert send(store, "u4", 0, DATA) == len(DATA)
    assert store.sha256("u4", len(DATA)) == SHA


def test_move_into_draft(tmp_path):
    store = UploadStore(tmp_path / "uploads")
    store.create("u5")
    send(store, "u5", 0, DATA)
    target = tmp_path / "draft.bin"
    store.move_into("u5", target)
    assert target.read_bytes() == DATA and not store.part("u5").exists()
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_stale_uploads_are_dropped(tmp_path):
    from sqlalchemy.orm import Session

    from gemhub.services.data.app import DataService
    from gemhub.services.data.models import Asset, Upload, Version

    svc = DataService(state_dir=str(tmp_path), db_url=f"sqlite:///{tmp_path}/data.sqlite", upload_expiry_hours=1)
    svc.init_db()
    with Session(svc.engine) as s:
        a = Asset(kind="dataset", name="d", workspace_id=1, workspace_name="w", description="", tags=[],
                  visibility="private", created_by="x")
        a.versions.append(Version(number=1, state="draft", size_bytes=0, file_count=0, note="", created_by="x"))
        s.add(a)
        s.flush()
        long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
        for uid in ("a" * 32, "b" * 32):  # both made two hours ago; only b got a chunk since
            s.add(Upload(id=uid, version_id=a.versions[0].id, batch="x", path=uid, size=1, sha256="0" * 64,
                         state="open", created_by="x", created=long_ago))
            svc.upload_store.create(uid)
        s.commit()
        old = os.stat(svc.upload_store.part("a" * 32)).st_mtime - 7200
        os.utime(tmp_path / "uploads" / ("a" * 32 + ".offset"), (old, old))
        svc._expire_uploads(s)
        assert [u.id for u in s.query(Upload)] == ["b" * 32]
        assert not svc.upload_store.part("a" * 32).exists() and svc.upload_store.part("b" * 32).exists()


def test_only_uploads_idle_since_the_cutoff_are_stale(tmp_path):
    import time

    store = UploadStore(tmp_path)
    now = time.time()
    old = datetime.datetime.fromtimestamp(now - 7200, datetime.timezone.utc)
    # created long ago, never received anything since: stale
    store.create("idle")
    os.utime(store._offset_file("idle"), (now - 7200, now - 7200))
    assert store.is_stale("idle", old, cutoff=now - 3600)
    # a chunk arrived recently: not stale
    store.create("busy")
    assert not store.is_stale("busy", old, cutoff=now - 3600)
    # no files (being created, or already moved into the draft by complete) but a recent
    # row (naive UTC, as SQLite returns it): not stale
    recent = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert not store.is_stale("moved", recent, cutoff=now - 3600)
    # being completed right now: never stale
    store.completing.add("idle")
    assert not store.is_stale("idle", old, cutoff=now - 3600)


# -- pipelined chunks: the next one arrives while the one before is made durable --------

def feed(w, data: bytes, pieces: int = 4) -> None:
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        w.write(data[i:i + step])


def test_pipelined_chunks_are_acknowledged_in_order_and_hashed_once(tmp_path):
    store = UploadStore(tmp_path)
    store.create("p1")
    first = store.announce("p1", 0, 2**20)  # its request came in
    assert store.predecessor("p1", 2**20) is first.done and store.predecessor("p1", 2**19) is None
    a = store.writer("p1", 0, 2**20, len(DATA), first)
    feed(a, DATA[:2**20])
    # the next chunk may not start while this one is still arriving: it waits for it
    with pytest.raises(Conflict, match="being written"):
        store.writer("p1", 2**20, 2**20, len(DATA))
    assert not first.done.done()
    syncing = a.arrived_whole()  # whole: now being made durable
    assert first.done.result() is True and store.predecessor("p1", 2**20) is None and store.busy("p1")
    b = store.writer("p1", 2**20, len(DATA) - 2**20, len(DATA))  # accepted while a syncs
    feed(b, DATA[2**20:])
    done_b = b.arrived_whole()
    assert syncing.result() == 2**20 and done_b.result() == len(DATA)
    a.settle()
    assert store.busy("p1")  # b is not settled yet
    b.settle()
    assert not store.busy("p1") and store.received("p1") == len(DATA)
    assert store.part("p1").read_bytes() == DATA
    assert store._hashers["p1"][0] == len(DATA) and store.sha256("p1", len(DATA)) == SHA  # streamed, not re-read


def test_aborted_pipelined_chunk_leaves_the_one_before_acknowledged(tmp_path):
    store = UploadStore(tmp_path)
    store.create("p2")
    a = store.writer("p2", 0, 2**20, len(DATA))
    feed(a, DATA[:2**20])
    syncing = a.arrived_whole()
    b = store.writer("p2", 2**20, 2**20, len(DATA))
    feed(b, b"x" * 2**19)  # garbage, and the client goes away half-way
    b.abort()
    assert syncing.result() == 2**20
    a.settle()
    assert not store.busy("p2") and store.received("p2") == 2**20
    assert store.part("p2").stat().st_size == 2**20  # the unacknowledged bytes are cut off
    assert store._hashers["p2"][0] == 2**20  # the hash went back to where b started
    assert send(store, "p2", 2**20, DATA[2**20:]) == len(DATA)
    assert store._hashers["p2"][0] == len(DATA) and store.sha256("p2", len(DATA)) == SHA


def test_a_failed_sync_acknowledges_nothing_after_it(tmp_path, monkeypatch):
    store = UploadStore(tmp_path)
    store.create("p3")
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    a = store.writer("p3", 0, 2**20, len(DATA))
    feed(a, DATA[:2**20])
    fa = a.arrived_whole()
    b = store.writer("p3", 2**20, 2**20, len(DATA))
    feed(b, DATA[2**20:2 * 2**20])
    fb = b.arrived_whole()
    with pytest.raises(OSError):
        fa.result()
    with pytest.raises(OSError):  # b's bytes may be on disk, but never acknowledged past a
        fb.result()
    a.settle()
    b.settle()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert store.received("p3") == 0 and store.part("p3").stat().st_size == 0
    assert "p3" not in store._hashers  # hashed again if it ever completes
    assert send(store, "p3", 0, DATA) == len(DATA) and store.sha256("p3", len(DATA)) == SHA


def test_writer_asks_the_network_to_wait_when_writing_lags(tmp_path, monkeypatch):
    store = UploadStore(tmp_path)
    store.create("p4")
    monkeypatch.setattr(ChunkWriter, "PIECE", 1024)
    monkeypatch.setattr(ChunkWriter, "QUEUED", 0)
    w = store.writer("p4", 0, len(DATA), len(DATA))
    waits = [f for f in (w.write(DATA[i:i + 4096]) for i in range(0, 64 * 4096, 4096)) if f is not None]
    assert waits, "a lagging write thread must slow the network down"
    for f in waits:
        f.result(timeout=30)
    w.abort()
    assert store.received("p4") == 0


def test_many_small_pieces_are_written_whole(tmp_path):
    """Tiny network reads make more pieces than pwritev takes at once (IOV_MAX)."""
    store = UploadStore(tmp_path)
    store.create("p5")
    w = store.writer("p5", 0, len(DATA), len(DATA))
    for i in range(0, len(DATA), 512):
        w.write(DATA[i:i + 512])
    assert w.commit() == len(DATA) and store.part("p5").read_bytes() == DATA
    assert store.sha256("p5", len(DATA)) == SHA


def test_chunk_handler_ends_its_announcement_when_it_finishes():
    """However a chunk's request ends (answered, refused, dropped), a pipelined chunk waiting
    for it goes on."""
    from gemhub.services.data.upload_handlers import UploadAPI
    from gemhub.services.data.uploads import Announced

    handler = object.__new__(UploadAPI)
    handler._announced = Announced(0, 10)
    handler.on_finish()
    assert handler._announced.done.result() is False
