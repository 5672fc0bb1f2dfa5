"""Synchronous client of the data service (datasets, models, resumable uploads) for the CLI.

Uploads follow the service's protocol: create (size + sha256) -> PUT chunks from the
received offset -> complete. The upload ids are remembered in a small state file, so an
upload interrupted (Ctrl-C, a dropped network) resumes from the server's received offset
the next time the same file is uploaded into the same draft: finished chunks are never
sent again. Two chunks are in flight at once: the next one is sent while the server makes
the one before durable.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx

from gemhub.cli.client import ApiError, HubApi

API_PREFIX = "/services/data/api/v1/"
STATE_FILE = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "gemhub" / "uploads.json"


def sha256_of(path: Path, buffer: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(buffer):
            h.update(chunk)
    return h.hexdigest()


class DataApi(HubApi):
    prefix = API_PREFIX
    PIPELINE = 2  # chunks in flight at once
    PIECE = 1 << 20  # bytes read from the file at a time

    def __init__(self, hub_url: str, token: str, *, timeout: float = 120,
                 transport: httpx.BaseTransport | None = None, state_file: Path = STATE_FILE):
        super().__init__(hub_url, token, timeout=timeout, transport=transport)
        self.state_file = state_file

    # -- assets ------------------------------------------------------------------------
    def list(self, kind: str, workspace: str | None = None) -> list[dict]:
        return list(self._paginate("assets", {"kind": kind, "workspace": workspace}))

    def create(self, kind: str, name: str, **fields: Any) -> dict:
        body = {"kind": kind, "name": name, **{k: v for k, v in fields.items() if v is not None}}
        return self._request("POST", "assets", json=body)

    def find(self, kind: str, ref: str, workspace: str | None = None) -> dict:
        """A visible dataset/model by name (in ``workspace`` when given) or id."""
        items = self.list(kind, workspace)
        named = [a for a in items if a["name"] == ref]
        if len(named) == 1:
            return self._request("GET", f"assets/{named[0]['id']}")
        if len(named) > 1:
            raise ApiError(400, f"several {kind}s are named {ref!r}: pass --workspace or the id")
        if ref.isdigit():
            found = self._request("GET", f"assets/{ref}")
            if found.get("kind") == kind:
                return found
        raise ApiError(404, f"no {kind} {ref!r} that you can see")

    def update(self, asset_id: int, **fields: Any) -> dict:
        return self._request("PATCH", f"assets/{asset_id}", json=fields)

    def versions(self, asset_id: int) -> list[dict]:
        return list(self._paginate(f"assets/{asset_id}/versions"))

    def new_draft(self, asset_id: int, note: str = "") -> dict:
        return self._request("POST", f"assets/{asset_id}/versions", json={"note": note})

    def draft_of(self, asset: dict) -> int:
        """The asset's open draft, started when there is none."""
        if asset.get("draft"):
            return int(asset["draft"])
        return int(self.new_draft(asset["id"])["number"])

    def publish(self, asset_id: int, number: int) -> dict:
        return self._request("POST", f"assets/{asset_id}/versions/{number}/publish")

    def files(self, asset_id: int, number: int, path: str = "") -> dict:
        return self._request("GET", f"assets/{asset_id}/versions/{number}/files", params={"path": path})

    def file_op(self, asset_id: int, number: int, **body: Any) -> dict:
        return self._request("POST", f"assets/{asset_id}/versions/{number}/files", json=body)

    def save_output(self, asset_id: int, project: str, path: str, note: str = "") -> dict:
        return self._request("POST", f"assets/{asset_id}/versions",
                             json={"from_output": {"project": project, "path": path}, "note": note})

    # -- uploads -----------------------------------------------------------------------
    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def upload(self, asset_id: int, number: int, files: list[tuple[Path, str]],
               on_chunk: Callable[[str, int, int], None] | None = None,
               chunk_bytes: int | None = None) -> list[dict]:
        """Upload ``(local file, path in the draft)`` pairs, resuming earlier attempts.
        ``on_chunk(path, offset, length)`` is called before each chunk is sent;
        ``chunk_bytes`` (default: what the service suggests) sets the chunk size; files are
        announced in batches as large as the service accepts."""
        state = self._state()
        todo, fresh = [], []
        for local, remote in files:
            st = local.stat()
            digest = sha256_of(local)
            key = f"{self.base_url}|{asset_id}|{number}|{remote}|{st.st_size}|{digest}"
            known = state.get(key)
            upload = None
            if known:
                try:
                    upload = self._request("GET", f"uploads/{known}")
                except ApiError:
                    upload = None
            todo.append([local, key, upload])
            if upload is None:
                fresh.append((len(todo) - 1, {"path": remote, "size": st.st_size, "sha256": digest}))
        limits = self._request("GET", "limits")
        chunk, batch_files = chunk_bytes or int(limits["chunk_bytes"]), int(limits["max_batch_files"])
        for start in range(0, len(fresh), batch_files):
            part = fresh[start:start + batch_files]
            made = self._request("POST", f"assets/{asset_id}/versions/{number}/uploads",
                                 json={"files": [f for _, f in part]})
            for (i, _), u in zip(part, made["uploads"]):
                todo[i][2] = u
                state[todo[i][1]] = u["id"]
            self._save_state(state)
        done = []
        for local, key, upload in todo:
            if upload["state"] != "complete":
                self._send(local, upload, chunk, on_chunk)
                upload = self._request("POST", f"uploads/{upload['id']}/complete")
            state = self._state()
            state.pop(key, None)
            self._save_state(state)
            done.append(upload)
        return done

    def _send(self, local: Path, upload: dict, chunk: int, on_chunk) -> None:
        """Send the file from the server's received offset, ``PIPELINE`` chunks in flight:
        the next chunk goes as soon as the one before has been sent whole, while the server
        makes that one durable, instead of waiting for its answer."""
        uid, size = upload["id"], upload["size"]
        offset = int(self._request("GET", f"uploads/{uid}")["offset"])
        failures = 0
        with ThreadPoolExecutor(self.PIPELINE, thread_name_prefix="gemhub-upload") as pool:
            while offset < size:
                inflight: deque[tuple[Future, threading.Event]] = deque()
                start = offset
                try:
                    while start < size or inflight:
                        if start < size and len(inflight) < self.PIPELINE:
                            n = min(chunk, size - start)
                            if on_chunk is not None:
                                on_chunk(upload["path"], start, n)
                            sent = threading.Event()
                            inflight.append((pool.submit(self._put_chunk, local, uid, start, n, sent), sent))
                            start += n
                            sent.wait()  # the next one goes once this one is out whole (or failed)
                            continue
                        offset, failures = inflight.popleft()[0].result(), 0
                except ApiError as e:
                    for f, _ in inflight:  # an answer still to come may move the offset on
                        try:
                            f.result()
                        except ApiError:
                            pass
                    failures += 1
                    if e.status not in (0, 409, 502, 503) or failures > 3:
                        raise
                    offset = int(self._request("GET", f"uploads/{uid}")["offset"])

    def _put_chunk(self, local: Path, uid: str, start: int, length: int, sent: threading.Event) -> int:
        """PUT ``length`` bytes of the file from ``start``, read as they are sent (a chunk is
        never held in memory whole); ``sent`` is set once they have all gone out."""

        def body():
            with open(local, "rb") as f:
                f.seek(start)
                left = length
                while left:
                    data = f.read(min(self.PIECE, left))
                    if not data:
                        raise ApiError(0, f"{local} became shorter while it was being uploaded")
                    left -= len(data)
                    yield data
            sent.set()

        try:
            r = self._request("PUT", f"uploads/{uid}", params={"offset": start}, content=body(),
                              headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)})
        finally:
            sent.set()
        return int(r["offset"])
