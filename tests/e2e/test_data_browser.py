"""A dataset from the browser to a running environment, as a person does it.

Create a dataset, start a version, upload a zip, a tar.gz and a folder (progress bars), extract
both, see a zip-slip archive refused with its reason, publish, pick the dataset on the
spawn page, read its files in the environment and fail to write them. Screenshots go to
test-artifacts/data/.
"""

from __future__ import annotations

import io
import tarfile
import time
import zipfile

import pytest

from browser import chromium_page, signup_and_login
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def archives(tmp_path):
    z = tmp_path / "images.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/cat1.txt", "meow")
        zf.writestr("dogs/dog1.txt", "woof")
    t = tmp_path / "labels.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        data = b"file,label\ncat1.txt,cat\n"
        info = tarfile.TarInfo("labels.csv")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../../escape.txt", "evil")
    return z, t, bad


def wait_data(hub, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.request("GET", "/services/data/health").status_code == 200:
            return
        time.sleep(0.3)
    raise TimeoutError("the data service did not start")


def row(page, name):
    return page.locator(f"#files tbody tr[data-name='{name}']")


def test_dataset_from_upload_to_read_only_mount(hub, artifacts, tmp_path):
    shots = artifacts / "data"
    wait_data(hub)
    name, password = unique_name("e2ed"), "Gemini-Pass-2026"
    zip_path, tgz_path, evil_path = archives(tmp_path)
    with chromium_page(shots) as page:
        signup_and_login(page, hub.url, name, password)
        page.goto(f"{hub.url}/services/data/")
        page.fill("#asset-name", "pets")
        page.fill("#asset-tags", "images, e2e")
        page.click("#create-asset")
        page.wait_for_selector("#asset-title:has-text('pets')")
        page.click("#new-version")
        page.wait_for_selector("#draft-tools:not([hidden])")
        page.screenshot(path=str(shots / "01-draft.png"))

        folder = tmp_path / "notes"
        (folder / "2026").mkdir(parents=True)
        (folder / "2026" / "readme.txt").write_text("a folder upload keeps its sub-folders")
        page.set_input_files("#upload-input", [str(zip_path), str(tgz_path), str(evil_path)])
        page.set_input_files("#upload-folder", str(folder))
        page.click("#upload")
        page.wait_for_function("document.querySelectorAll('#uploads .done').length === 4")
        assert page.locator("#uploads progress").count() == 4
        row(page, "notes").wait_for()
        page.screenshot(path=str(shots / "02-uploaded.png"))

        row(page, "images.zip").locator("button.extract").click()
        row(page, "images").wait_for()
        row(page, "labels.tar.gz").locator("button.extract").click()
        row(page, "labels").wait_for()
        assert "Extracted 1 files into labels/" in page.locator("#note").inner_text()
        row(page, "evil.zip").locator("button.extract").click()
        page.wait_for_selector("#error.shown")
        assert "points outside the archive's folder" in page.locator("#error").inner_text()
        page.screenshot(path=str(shots / "03-extracted-and-refused.png"))

        row(page, "images").locator("a.open-folder").click()
        row(page, "cats").wait_for()
        page.goto(page.url)  # back to the draft's root
        page.wait_for_selector("#draft-tools:not([hidden])")
        # publishing is irreversible: the page asks first; declining changes nothing
        asked = []
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.click("#publish")
        assert asked and "read-only forever" in asked[0], asked
        assert page.locator("#versions tr[data-version='1'][data-state='draft']").count() == 1
        page.once("dialog", lambda d: d.accept())
        page.click("#publish")
        page.wait_for_selector("#versions tr[data-version='1'][data-state='published']")
        page.screenshot(path=str(shots / "04-published.png"))

        page.goto(f"{hub.url}/hub/spawn")
        page.select_option("#gemhub-datasets-1", label=page.locator(
            "#gemhub-datasets-1 option", has_text="pets v1").inner_text())
        page.screenshot(path=str(shots / "05-spawn-form.png"))
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=60_000)

        api = f"{hub.url}/user/{name}/api/contents"
        r = page.request.get(f"{api}/data-1/images/cats/cat1.txt?content=1&type=file")
        assert r.ok and r.json()["content"] == "meow"
        r = page.request.get(f"{api}/data-1/notes/2026/readme.txt?content=1&type=file")
        assert r.ok and "sub-folders" in r.json()["content"]
        r = page.request.get(f"{api}/data-1/labels/labels.csv?content=1&type=file")
        assert r.ok and "cat1.txt,cat" in r.json()["content"]
        xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
        r = page.request.put(f"{api}/data-1/mine.txt", headers={"X-XSRFToken": xsrf},
                             data={"type": "file", "format": "text", "content": "no"})
        assert not r.ok and "Read-only file system" in r.text(), r.text()
        r = page.request.put(f"{api}/code/mine.txt", headers={"X-XSRFToken": xsrf},
                             data={"type": "file", "format": "text", "content": "yes"})
        assert r.ok, r.text()  # the same request works where writing is allowed
        page.goto(f"{hub.url}/user/{name}/lab/tree/data-1/images")
        page.wait_for_selector(".jp-DirListing-itemText:has-text('cats')", timeout=60_000)
        page.screenshot(path=str(shots / "06-mounted-in-lab.png"))
