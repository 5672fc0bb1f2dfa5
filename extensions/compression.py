"""gzip for the single-user server that compresses each static file once, not on every load.

tornado's ``compress_response`` (set in the runtime's jupyter_server_config.py) gzips every
text response as it streams; for JupyterLab's ~5 MB of JavaScript that is ~0.15 s of the
server's CPU on every cold load, on the same cores the browser needs. Static files (whole
files with ``Last-Modified`` and ``Content-Length``; API answers have no ``Last-Modified``)
are compressed the first time and their gzip bytes kept, keyed by path, modification time
and length, so later loads send the kept bytes. Everything else is compressed as tornado does.
"""

from __future__ import annotations

from collections import OrderedDict

from tornado import httputil
from tornado.web import GZipContentEncoding

CACHE_BYTES = 64 << 20  # JupyterLab's whole static tree is ~4 MB gzipped
_LARGEST = 16 << 20  # a file whose gzip is bigger than this is compressed on every request


class GzipCache:
    """Compressed bytes by (path, Last-Modified, length), least recently used dropped past
    ``max_bytes``."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
        return data

    def put(self, key: tuple[str, str, str], data: bytes) -> None:
        if len(data) > min(_LARGEST, self.max_bytes):
            return
        old = self._entries.pop(key, None)
        self.size += len(data) - (len(old) if old is not None else 0)
        self._entries[key] = data
        while self.size > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.size -= len(dropped)


class CachedGzip(GZipContentEncoding):
    """tornado's gzip transform, serving kept bytes for static files it compressed before.

    A subclass bound to a cache by :func:`with_cache` replaces GZipContentEncoding in the
    application's transforms."""

    cache: GzipCache

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        super().__init__(request)
        self._get = request.method == "GET"  # a HEAD answer has headers only
        self._path = request.path
        self._key: tuple[str, str, str] | None = None
        self._kept: list[bytes] | None = None
        self._sent_cached = False

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        modified, length = headers.get("Last-Modified"), headers.get("Content-Length")
        static = (self._gzipping and self._get and status_code == 200 and modified and length
                  and "Content-Encoding" not in headers)
        if static:
            key = (self._path, modified, length)
            cached = self.cache.get(key)  # only compressible types were kept
            if cached is not None:
                if "Vary" in headers:
                    headers["Vary"] += ", Accept-Encoding"
                else:
                    headers["Vary"] = "Accept-Encoding"
                headers["Content-Encoding"] = "gzip"
                headers["Content-Length"] = str(len(cached))
                self._sent_cached = True
                return status_code, headers, cached
        status_code, headers, out = super().transform_first_chunk(status_code, headers, chunk, finishing)
        if static and self._gzipping:
            self._key, self._kept = key, [out]
            if finishing:
                self._keep()
        return status_code, headers, out

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        if self._sent_cached:
            return b""  # the handler still streams the file; the kept bytes went out whole
        out = super().transform_chunk(chunk, finishing)
        if self._kept is not None:
            self._kept.append(out)
            if finishing:
                self._keep()
        return out

    def _keep(self) -> None:
        self.cache.put(self._key, b"".join(self._kept))
        self._kept = None


def with_cache(cache: GzipCache | None = None) -> type[CachedGzip]:
    """A CachedGzip class bound to its own cache (one per server process)."""
    return type("CachedGzip", (CachedGzip,), {"cache": cache or GzipCache()})


def install(web_app) -> bool:
    """Swap tornado's gzip transform for the caching one; False when compression is off."""
    if GZipContentEncoding not in web_app.transforms:
        return False
    cls = with_cache()
    web_app.transforms = [cls if t is GZipContentEncoding else t for t in web_app.transforms]
    return True
