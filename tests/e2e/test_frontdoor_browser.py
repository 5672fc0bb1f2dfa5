"""JupyterLab through the hub's front door, as the browser sees it (issue 15).

The first open of a user's Lab receives its JavaScript (JupyterLab's own and every
extension's) gzipped, and the hub's pages too; the second load takes every extension asset
(``lab/extensions/...``) from the browser's cache without asking the server again: no
request, hence no 304, for any of them. The build check and the news/update announcements,
which GemHub turns off, make no request. Screenshots go to test-artifacts/frontdoor/.
"""

from __future__ import annotations

import pytest

from browser import chromium_page, signup_and_login
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class Network:
    """Responses that came over the network (DevTools protocol): url, the server's status
    (a revalidated cache entry is a 304 here) and headers. Cache hits are not in it."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.urls: dict[str, str] = {}
        self.wire: dict[str, dict] = {}
        self.cdp.on("Network.requestWillBeSent", lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        self.cdp.on("Network.responseReceivedExtraInfo", lambda e: self.wire.__setitem__(e["requestId"], e))

    def take(self) -> list[dict]:
        out = []
        for rid, extra in self.wire.items():
            headers = {k.lower(): v for k, v in extra["headers"].items()}
            out.append({"url": self.urls.get(rid, ""), "status": extra["statusCode"], "headers": headers})
        self.urls, self.wire = {}, {}
        return out


def open_lab(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-LauncherCard:visible", timeout=90_000)
    page.wait_for_load_state("networkidle")


def test_lab_javascript_is_compressed_and_extension_assets_are_not_revalidated(hub, artifacts):
    shots = artifacts / "frontdoor"
    name, password = unique_name("fd"), "Gemini-Pass-2026"
    with chromium_page(shots) as page:
        signup_and_login(page, hub.url, name, password)
        r = hub.api("POST", f"/users/{name}/server")
        assert r.status_code in (201, 202), r.text
        hub.wait_server(name)
        net = Network(page)

        open_lab(page, f"{hub.url}/user/{name}/lab")
        first = net.take()
        page.screenshot(path=str(shots / "01-first-load.png"))
        scripts = [r for r in first if r["status"] == 200 and r["url"].split("?")[0].endswith(".js")
                   and "javascript" in r["headers"].get("content-type", "")]
        ext = [r for r in scripts if "/lab/extensions/" in r["url"]]
        assert len(scripts) > 20 and ext, [r["url"] for r in first]
        raw = [r["url"] for r in scripts if r["headers"].get("content-encoding") != "gzip"]
        assert not raw, f"JavaScript sent uncompressed: {raw}"
        for r in ext:
            assert "immutable" in r["headers"].get("cache-control", ""), (r["url"], r["headers"])
        called = [r["url"] for r in first if "/lab/api/build" in r["url"] or "announcements" in r["url"]]
        assert not called, called

        open_lab(page, f"{hub.url}/user/{name}/lab")
        second = net.take()
        page.screenshot(path=str(shots / "02-second-load.png"))
        assert any(r["url"].endswith(f"/user/{name}/lab") for r in second), "the page itself is fetched again"
        revalidated = [(r["status"], r["url"]) for r in second if "/lab/extensions/" in r["url"]]
        assert not revalidated, f"extension assets went to the server again: {revalidated}"
        assert not [r["url"] for r in second if r["status"] == 200 and "/static/lab/" in r["url"]]

        home = page.request.get(f"{hub.url}/hub/home", headers={"Accept-Encoding": "gzip"})
        assert home.ok and home.headers.get("content-encoding") == "gzip", home.headers
