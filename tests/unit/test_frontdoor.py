"""The front door's settings (issue 15): the single-user configuration GemHub ships (immutable
extension assets under any base URL, gzip, the build check and announcements off), the hub's
and services' gzip, and the single-user gzip that compresses each static file once."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPHeaders
from tornado.web import Application, GZipContentEncoding
from traitlets.config import Config, PyFileConfigLoader

from config_inputs import INPUTS
from gemhub.hub_config import configurer
from gemhub.lab import compression
from gemhub.spawner.local import runtime

CONFIG_DIR = Path(runtime.JUPYTER_CONFIG_DIR)


def load_server_config(monkeypatch, prefix: str | None) -> Config:
    """The file as jupyter-server loads it (traitlets' Python config loader)."""
    if prefix is None:
        monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    else:
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", prefix)
    return PyFileConfigLoader("jupyter_server_config.py", path=str(CONFIG_DIR)).load_config()


def run_after(earlier: Config) -> Config:
    """The file run over what an earlier config file set (the loader gives it that ``c``)."""
    c = earlier.copy()
    code = (CONFIG_DIR / "jupyter_server_config.py").read_text()
    exec(compile(code, "jupyter_server_config.py", "exec"), {"c": c, "get_config": lambda: c})
    return c


@pytest.mark.parametrize("prefix, expected", [
    ("/user/alice/", "/user/alice/lab/extensions/"),
    ("/base/user/al%40ice/work/", "/base/user/al%40ice/work/lab/extensions/"),
    (None, "/lab/extensions/"),
])
def test_extension_assets_are_immutable_under_the_servers_base_url(monkeypatch, prefix, expected):
    cfg = load_server_config(monkeypatch, prefix)
    assert cfg.ServerApp.static_immutable_cache == [expected]


def test_server_gzip_is_a_plain_dict_merged_with_earlier_settings(monkeypatch):
    cfg = load_server_config(monkeypatch, "/user/a/")
    # jupyterhub-singleuser looks inside tornado_settings: a lazy value breaks its start
    assert type(cfg.ServerApp.tornado_settings) is dict
    assert cfg.ServerApp.tornado_settings == {"compress_response": True}
    cfg = run_after(Config({"ServerApp": {"tornado_settings": {"headers": {"X-A": "1"}}}}))
    assert cfg.ServerApp.tornado_settings == {"headers": {"X-A": "1"}, "compress_response": True}


def test_page_config_turns_off_the_build_check_and_names_real_plugins():
    page = json.loads((CONFIG_DIR / "labconfig" / "page_config.json").read_text())
    assert page["buildCheck"] is False and page["buildAvailable"] is False
    import jupyterlab
    from jupyterlab.commands import get_app_dir

    bundle = "".join(p.read_text(errors="replace") for p in (Path(get_app_dir()) / "static").glob("jlab_core*.js"))
    for plugin in page["disabledExtensions"]:
        assert f'"{plugin}"' in bundle, f"{plugin} is not a JupyterLab {jupyterlab.__version__} plugin"


def test_hub_and_services_gzip(tmp_path):
    cfg = configurer.build_config(configurer.merge_platform({}, {}), INPUTS)
    assert cfg["JupyterHub"]["tornado_settings"]["compress_response"] is True
    from gemhub.services.quota.app import QuotaService

    service = QuotaService(db_url=f"sqlite:///{tmp_path}/q.sqlite")
    assert GZipContentEncoding in service.make_app(hub_auth=object()).transforms
    service.engine.dispose()


# -- gzip once per static file ---------------------------------------------------------

BODY = b"export const x = 1;\n" * 20_000  # 400 kB of JavaScript


def static_headers(length: int = len(BODY)) -> HTTPHeaders:
    return HTTPHeaders({"Content-Type": "application/javascript", "Content-Length": str(length),
                        "Last-Modified": "Mon, 30 Nov 2026 03:15:02 GMT", "Etag": '"abc"'})


def request(method="GET", path="/user/a/static/lab/x.js", encoding="gzip, deflate"):
    return SimpleNamespace(method=method, path=path, headers=HTTPHeaders({"Accept-Encoding": encoding}))


def respond(cls, req, headers, body=BODY, piece=64 * 1024):
    """Stream ``body`` through a transform as StaticFileHandler does; (headers, wire bytes)."""
    t = cls(req)
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)] or [b""]
    _, headers, out = t.transform_first_chunk(200, headers, pieces[0], False)
    chunks = [out] + [t.transform_chunk(p, False) for p in pieces[1:]] + [t.transform_chunk(b"", True)]
    return headers, b"".join(chunks)


def test_static_file_is_compressed_once_then_served_from_the_kept_bytes():
    cls = compression.with_cache()
    h1, wire1 = respond(cls, request(), static_headers())
    assert h1["Content-Encoding"] == "gzip" and "Content-Length" not in h1  # streamed: chunked
    assert gzip.decompress(wire1) == BODY and len(wire1) < len(BODY) // 10
    h2, wire2 = respond(cls, request(), static_headers())
    assert h2["Content-Encoding"] == "gzip" and h2["Content-Length"] == str(len(wire2))
    assert gzip.decompress(wire2) == BODY and "Accept-Encoding" in h2["Vary"]
    assert cls.cache.size == len(wire2)


def test_what_is_not_kept():
    cls = compression.with_cache()
    api = HTTPHeaders({"Content-Type": "application/json", "Content-Length": str(len(BODY))})
    _, wire = respond(cls, request(path="/user/a/api/contents"), api)
    assert gzip.decompress(wire) == BODY and cls.cache.size == 0  # no Last-Modified: an API answer
    h, wire = respond(cls, request(encoding="identity"), static_headers())
    assert "Content-Encoding" not in h and wire == BODY and cls.cache.size == 0
    png = static_headers()
    png["Content-Type"] = "image/png"
    h, wire = respond(cls, request(path="/user/a/static/x.png"), png)
    assert "Content-Encoding" not in h and wire == BODY and cls.cache.size == 0
    respond(cls, request(), static_headers())  # kept now
    # a HEAD answer has no body: never the kept bytes
    _, head_headers, out = cls(request(method="HEAD")).transform_first_chunk(200, static_headers(), b"", True)
    assert out == b"" and head_headers["Content-Length"] == str(len(BODY))
    # a changed file (another length or time) is compressed again, not served stale
    changed = BODY + b"// more\n"
    h, wire = respond(cls, request(), static_headers(len(changed)), changed)
    assert gzip.decompress(wire) == changed and "Content-Length" not in h


def test_cache_drops_least_recently_used_past_its_size():
    cache = compression.GzipCache(max_bytes=100)
    cache.put(("a", "t", "1"), b"x" * 40)
    cache.put(("b", "t", "1"), b"x" * 40)
    assert cache.get(("a", "t", "1")) is not None  # a is now the most recent
    cache.put(("c", "t", "1"), b"x" * 40)
    assert cache.get(("b", "t", "1")) is None and cache.get(("a", "t", "1")) and cache.size == 80
    cache.put(("d", "t", "1"), b"x" * 101)  # bigger than the whole cache: not kept
    assert cache.get(("d", "t", "1")) is None and cache.size == 80


def test_install_replaces_tornados_gzip_only_when_it_is_on():
    on = Application([], compress_response=True)
    assert compression.install(on)
    assert GZipContentEncoding not in on.transforms
    assert [t for t in on.transforms if issubclass(t, compression.CachedGzip)]
    off = Application([])
    assert not compression.install(off) and off.transforms == Application([]).transforms
