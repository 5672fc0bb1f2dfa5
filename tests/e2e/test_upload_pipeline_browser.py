"""The browser's uploader pipelines its chunks (issue 15): the next chunk is on its way
before the server has answered the one before (which it answers only once that chunk is on
disk), and the file still arrives whole, in order, with its checksum verified.

A hub of its own whose data service suggests 1 MiB chunks, so a 6 MiB file takes six.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from browser import chromium_page, signup_and_login
from hubproc import REPO, Hub, unique_name
from test_data_browser import wait_data

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
CHUNK = 2**20


@pytest.fixture
def chunky_hub(artifacts):
    work = Path(tempfile.mkdtemp(prefix="gemhub-test-"))
    work.chmod(0o755)
    h = Hub(work)
    wrapper = work / "jupyterhub_config.py"
    wrapper.write_text(
        f"load_subconfig({str(REPO / 'hub_config' / 'jupyterhub_config.py')!r})\n"
        "for s in c.JupyterHub.services:\n"
        "    if s['name'] == 'data':\n"
        f"        s['command'] += ['--DataService.chunk_bytes={CHUNK}']\n")
    h.hub_config = wrapper
    h.start()
    wait_data(h)
    yield h
    h.stop()
    (artifacts / "upload-pipeline-hub.log").write_bytes(h.log_path.read_bytes())


def test_browser_sends_the_next_chunk_before_the_one_before_is_answered(chunky_hub, artifacts, tmp_path):
    hub = chunky_hub
    data = os.urandom(6 * CHUNK + 12345)
    local = tmp_path / "weights.bin"
    local.write_bytes(data)
    name = unique_name("pipe")
    with chromium_page(artifacts / "upload-pipeline") as page:
        signup_and_login(page, hub.url, name, "Gemini-Pass-2026")
        puts: dict[str, dict] = {}
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")

        def sent(e):
            if e["request"]["method"] == "PUT" and "/uploads/" in e["request"]["url"]:
                puts[e["requestId"]] = {"offset": int(e["request"]["url"].split("offset=")[1]),
                                        "sent": e["timestamp"]}

        def answered(e):
            if e["requestId"] in puts:
                puts[e["requestId"]]["answered"] = e["timestamp"]

        cdp.on("Network.requestWillBeSent", sent)
        cdp.on("Network.responseReceived", answered)

        page.goto(f"{hub.url}/services/data/")
        page.fill("#asset-name", "weights")
        page.click("#create-asset")
        page.wait_for_selector("#asset-title:has-text('weights')")
        page.click("#new-version")
        page.wait_for_selector("#draft-tools:not([hidden])")
        page.set_input_files("#upload-input", str(local))
        page.click("#upload")
        page.wait_for_function("document.querySelectorAll('#uploads .done').length === 1", timeout=120_000)
        page.screenshot(path=str(artifacts / "upload-pipeline" / "01-uploaded.png"))

        chunks = sorted(puts.values(), key=lambda p: p["offset"])
        assert [c["offset"] for c in chunks] == [i * CHUNK for i in range(7)], chunks
        early = [c["offset"] for before, c in zip(chunks, chunks[1:]) if c["sent"] < before["answered"]]
        print(f"chunks sent before the one before was answered (offsets): {early}")
        assert early, "every chunk waited for the answer to the one before"

        asset_id = int(page.url.rstrip("/").split("/")[-1].split("?")[0])
        got = page.request.get(f"{hub.url}/services/data/api/v1/assets/{asset_id}/versions/1/files/content",
                               params={"path": "weights.bin"})
        assert got.ok and hashlib.sha256(got.body()).hexdigest() == hashlib.sha256(data).hexdigest()
