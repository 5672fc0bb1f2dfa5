"""Choosing an accelerator on the spawn page in a real browser, and the admin's device page.

A workspace limited by the hub admin to B1/S1 with custom specs allowed: the page greys out
the other presets (and the one this platform can never run, with the reason), shows the
custom spec field, answers a typo with the parser's message, and starts a server on a
quarter of the simulated A100. The admin then sees it holding that device. Screenshots go
to test-artifacts/localaccel/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from browser import chromium_page, signup_and_login
from gemhub.spawner.local import accounts, names
from hubproc import Hub, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "Gem-pass-4821"
CONFIG = {
    "accelerators": {"inventory": "simulated",
                     "simulated": [{"node": "local", "model": "A100-80G", "count": 1}]},
    "presets": [
        {"name": "B1", "cpu": 1, "memory": "1G", "price_per_hour": "0.50"},
        {"name": "S1", "cpu": 1, "memory": "1G", "accelerator": "0.5(A100-80G)", "price_per_hour": "6.00"},
        {"name": "P1", "cpu": 1, "memory": "1G", "accelerator": "1(A100-80G)", "price_per_hour": "12.00"},
        {"name": "P2", "cpu": 1, "memory": "1G", "accelerator": "2(A100-80G)", "price_per_hour": "24.00"},
    ],
}


@pytest.fixture(scope="module")
def hub(artifacts):
    workdir = Path(tempfile.mkdtemp(prefix="gemhub-test-"))
    h = Hub(workdir, CONFIG).start()
    yield h
    h.stop()
    if h.log_path.exists():
        shutil.copy(h.log_path, artifacts / "localaccel-browser-hub.log")
    shutil.rmtree(workdir, ignore_errors=True)


def test_choose_a_custom_slice_and_see_it_on_the_device_page(hub, artifacts):
    shots = artifacts / "localaccel"
    name, token = hub.create_user(unique_name("lb"))
    ws = hub.request("GET", "/services/quota/api/v1/workspaces", token=token).json()["items"][0]
    r = hub.request("PATCH", f"/services/quota/api/v1/workspaces/{ws['id']}", token=hub.admin_token,
                    json={"allowed_presets": ["B1", "S1"], "custom_spec": True})
    assert r.status_code == 200, r.text
    try:
        with chromium_page(shots) as page:
            signup_and_login(page, hub.url, name, PASSWORD)
            page.goto(f"{hub.url}/hub/spawn")
            assert page.is_checked("#gemhub-preset-B1")
            assert page.is_enabled("#gemhub-preset-S1")
            assert page.is_disabled("#gemhub-preset-P1")  # not allowed in this workspace
            assert page.is_disabled("#gemhub-preset-P2")  # never fits one A100
            assert "unavailable:" in page.inner_text("label[for=gemhub-preset-P2]")
            assert "6.00 points/hour" in page.inner_text("label[for=gemhub-preset-S1]")
            assert page.is_visible("#gemhub-accelerator")
            page.screenshot(path=str(shots / "01-spawn-form.png"), full_page=True)

            page.fill("#gemhub-accelerator", "0.25(A100-80G")
            page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
            page.wait_for_selector("text=column")
            page.screenshot(path=str(shots / "02-bad-spec.png"), full_page=True)

            page.fill("#gemhub-accelerator", "0.25(A100-80G)")
            page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
            page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000)

            page.goto(f"{hub.url}/hub/logout")
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", "admin")
            page.fill("#password_input", hub.admin_password)
            page.click("#login_submit")
            page.wait_for_url(lambda u: "/hub/login" not in u)
            page.click("#gemhub-nav-console")  # the admin console's devices tab
            page.click("#gemhub-tab-devices")
            row = page.locator("tr[data-device='local/0']")
            assert name in row.inner_text() and "simulated" in row.inner_text()
            page.screenshot(path=str(shots / "03-devices.png"), full_page=True)
    finally:
        hub.api("DELETE", f"/users/{name}/server")
        hub.wait_stopped(name)
        if os.geteuid() == 0:
            accounts.remove_empty_groups(accounts.remove_user(names.unix_name(name)))
