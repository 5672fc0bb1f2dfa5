"""Resumable uploads over HTTP (the protocol is described in uploads.py).

    POST /api/v1/assets/<id>/versions/<n>/uploads  {"files": [{"path", "size", "sha256"}, ...]}
    GET|HEAD /api/v1/uploads/<uid>                 -> {"offset": received, ...} (+ Upload-Offset)
    PUT  /api/v1/uploads/<uid>?offset=N            body: the bytes from N (streamed to disk)
    POST /api/v1/uploads/<uid>/complete            verify size and sha256, move into the draft

Chunks are streamed (``stream_request_body``): nothing is buffered in memory and the body
size limit is the file's remaining size, not tornado's default. A client may pipeline: the
chunk that starts where the arriving one ends waits for it, then arrives while the one
before is being made durable; each answer still comes only once its bytes are on disk.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from tornado import web

from gemhub.services.common import params
from gemhub.services.common.audit import audit_event
from gemhub.services.common.errors import BadRequest, Conflict, NotFound

from . import files
from .catalog import Catalog
from .handlers import DataAPIHandler
from .models import Upload, Version
from .names import split_path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PREDECESSOR_WAIT = 600  # seconds a pipelined chunk waits for the body of the one before it


def upload_json(u: Upload, offset: int) -> dict:
    return {"id": u.id, "path": u.path, "size": u.size, "sha256": u.sha256, "offset": offset,
            "state": u.state, "batch": u.batch}


class UploadMixin:
    @property
    def store(self):
        return self.settings["upload_store"]

    async def upload(self, uid: str, action: str = "edit") -> dict:
        """The upload (``upload_json`` with its asset id and version number) if the actor
        may ``action`` its dataset/model; 404 otherwise."""

        def find(cat: Catalog) -> dict:
            u = cat.db.get(Upload, uid)
            if u is None:
                raise NotFound(f"no upload {uid}")
            v = cat.db.get(Version, u.version_id)
            cat.get(v.asset_id, action)
            return {**upload_json(u, 0), "asset_id": v.asset_id, "number": v.number}

        return await self.in_catalog(find)


class UploadsAPI(UploadMixin, DataAPIHandler):
    async def post(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)
        body = self.json_body()
        limits = self.settings["upload_limits"]
        items = body.get("files")
        if not isinstance(items, list) or not items:
            raise BadRequest('send {"files": [{"path": ..., "size": ..., "sha256": ...}, ...]}')
        if len(items) > limits["max_batch_files"]:
            raise BadRequest(f"{len(items)} files in one batch: at most {limits['max_batch_files']}")
        wanted = []
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                raise BadRequest("each file must be an object with path, size and sha256")
            path = "/".join(split_path(item.get("path"), "file path"))
            size = params.whole(item.get("size"), f"size of {params.echo(path)} (bytes)")
            digest = item.get("sha256")
            if size > limits["max_file_bytes"]:
                raise BadRequest(f"{path!r} is {size} bytes: web uploads take at most {limits['max_file_bytes']}"
                                 " bytes a file; use SFTP for bigger files")
            if not isinstance(digest, str) or not _SHA256.match(digest.lower()):
                raise BadRequest(f"{path!r}: sha256 must be 64 hexadecimal characters")
            if path in seen:
                raise BadRequest(f"{path!r} appears twice in the batch")
            seen.add(path)
            wanted.append((path, size, digest.lower()))
        batch = uuid.uuid4().hex
        store = self.store

        def start(cat: Catalog) -> list[dict]:
            a, v = cat.draft(asset_id, number)
            root = cat.draft_dir(a, v)
            made = []
            for path, size, digest in wanted:
                if (root / path).exists():
                    raise Conflict(f"{path!r} already exists in the draft; delete or rename it first")
                made.append(Upload(id=uuid.uuid4().hex, version_id=v.id, batch=batch, path=path, size=size,
                                   sha256=digest, state="open", created_by=cat.actor))
            for u in made:
                cat.db.add(u)
                store.create(u.id)
            audit_event(cat.db, cat.actor, f"{a.kind}.upload.start", f"asset:{a.id}", version=v.number,
                        batch=batch, files=len(made))
            cat.db.commit()
            return [upload_json(u, 0) for u in made]

        with self.draft_lock(asset_id, "being changed"):
            made = await self.in_catalog(start)
        self.write_json({"batch": batch, "chunk_bytes": limits["chunk_bytes"], "uploads": made}, 201)


@web.stream_request_body
class UploadAPI(UploadMixin, DataAPIHandler):
    writer = None
    gone = False  # the client closed the connection
    _announced = None

    async def prepare(self):
        await super().prepare()
        if self.request.method != "PUT":
            return
        uid = self.path_args[0]
        offset = params.whole(self.get_query_argument("offset", None) or "0", "offset")
        length = self.request.headers.get("Content-Length")
        if length is None:
            raise BadRequest("send Content-Length with each chunk")
        length = params.whole(length, "Content-Length")
        # seen before any other await, so that a pipelined next chunk finds this one
        self._announced = self.store.announce(uid, offset, length)
        u = await self.upload(uid)
        if u["state"] != "open":
            raise Conflict("this upload is complete already")
        self.request.connection.set_max_body_size(max(length, 1))
        before = self.store.predecessor(uid, offset)
        if before is not None:  # pipelined: the chunk before this one is still arriving
            try:
                await asyncio.wait_for(asyncio.wrap_future(before), PREDECESSOR_WAIT)
            except asyncio.TimeoutError:
                pass  # still arriving: the writer below refuses this chunk with a 409
            if self.gone:
                raise web.Finish()
        self.writer = self.store.writer(uid, offset, length, u["size"], self._announced)
        self._upload = u
        self._receiving_since = time.perf_counter()

    def data_received(self, chunk: bytes):
        if self.writer is not None:
            backlog = self.writer.write(chunk)
            if backlog is not None:  # the disk lags: read no more until some of it is written
                return asyncio.wrap_future(backlog)

    def on_connection_close(self):
        self.gone = True
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def on_finish(self):
        if self._announced is not None:  # refused, or over: a chunk waiting for it goes on
            self._announced.finish(False)
        super().on_finish()

    def _answer(self, u: dict, offset: int) -> dict:
        return {k: u[k] for k in ("id", "path", "size", "sha256", "state", "batch")} | {"offset": offset}

    async def put(self, uid):
        writer, self.writer = self.writer, None
        received = time.perf_counter()
        try:
            offset = await asyncio.wrap_future(writer.arrived_whole())
        finally:
            writer.settle()
        # how long the body took to arrive and how long the client then waited for it to
        # be durable (benchmarks/upload.py reads these)
        self.set_header("Server-Timing", f"receive;dur={(received - self._receiving_since) * 1000:.1f}, "
                                         f"sync;dur={(time.perf_counter() - received) * 1000:.1f}")
        self.set_header("Upload-Offset", str(offset))
        self.write_json(self._answer(self._upload, offset))

    async def _received(self, uid: str) -> tuple[dict, int]:
        u = await self.upload(uid, "see")
        offset = u["size"] if u["state"] == "complete" else await self.in_thread(self.store.received, uid)
        return u, offset

    async def get(self, uid):
        u, offset = await self._received(uid)
        self.set_header("Upload-Offset", str(offset))
        self.write_json(self._answer(u, offset))

    async def head(self, uid):
        u, offset = await self._received(uid)
        self.set_header("Upload-Offset", str(offset))
        self.set_header("Upload-Length", str(u["size"]))
        self.finish()


class UploadCompleteAPI(UploadMixin, DataAPIHandler):
    async def post(self, uid):
        u = await self.upload(uid)
        if u["state"] == "complete":  # a retried completion answers the same
            self.write_json({**u, "offset": u["size"]})
            return
        if uid in self.store.completing:
            raise Conflict("this upload is being completed by another request")
        if self.store.busy(uid):
            raise Conflict("a chunk of this upload is still being written; complete it when every chunk is answered")
        self.store.completing.add(uid)
        try:
            with self.draft_lock(u["asset_id"], "being changed"):
                result = await self.in_catalog(self._complete, u, files_work=True)
        finally:
            self.store.completing.discard(uid)
        self.write_json(result)

    def _complete(self, cat: Catalog, info: dict) -> dict:
        """Verify size and checksum, move the file into the draft, count it (blocking)."""
        uid = info["id"]
        a, v = cat.draft(info["asset_id"], info["number"])
        u = cat.db.get(Upload, uid)
        if u is None:
            raise NotFound(f"no upload {uid}")
        if u.state == "complete":
            return {**upload_json(u, u.size)}
        received = self.store.received(uid)
        if received != u.size:
            raise Conflict(f"{received} of {u.size} bytes received; send the rest from offset {received}")
        digest = self.store.sha256(uid, u.size)
        if digest != u.sha256:
            self.store.reset(uid)
            raise BadRequest(f"checksum mismatch for {u.path!r}: got sha256 {digest}, expected {u.sha256};"
                             " the upload was reset, send the file again")
        root = cat.draft_dir(a, v)
        folder = root
        for part in u.path.split("/")[:-1]:
            folder = folder / part
            if not folder.exists():
                folder.mkdir(mode=0o755)
        target = files.locate(root, u.path, must_exist=False)
        if target.exists():
            raise Conflict(f"{u.path!r} already exists in the draft; delete or rename it first")
        self.store.move_into(uid, target)
        u.state = "complete"
        cat.count(v, files.Usage(1, u.size))
        audit_event(cat.db, cat.actor, f"{a.kind}.upload.complete", f"asset:{a.id}", version=v.number,
                    path=u.path, size=u.size)
        cat.db.commit()
        return {**upload_json(u, u.size), "version": {"number": v.number, "size_bytes": v.size_bytes,
                                                      "file_count": v.file_count}}
