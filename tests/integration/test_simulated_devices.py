"""Simulated devices are honest (issue 14): the very first spawn page after a hub starts
labels them simulated (the inventory is read lazily), and an idle environment on one
reports its allocation and memory cap with no invented load, in the lab's GPU API and in
the hub's Prometheus metrics. One dedicated hub: "first page after start" needs a fresh one."""

from __future__ import annotations

import re

import httpx
import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration

CONFIG = {"accelerators": {"inventory": "simulated",
                           "simulated": [{"node": "local", "model": "A100-80G", "count": 1}]}}


def admin_browser(hub) -> httpx.Client:
    """The admin logged in with a cookie, as a browser is (the spawn page wants a login)."""
    c = httpx.Client(base_url=hub.url, timeout=30)
    page = c.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    r = c.post("/hub/login", data={"username": "admin", "password": hub.admin_password,
                                   **({"_xsrf": xsrf.group(1)} if xsrf else {})}, follow_redirects=False)
    assert r.status_code == 302, r.text
    return c


def test_first_spawn_page_is_labelled_and_an_idle_simulated_slice_shows_no_load(make_hub):
    hub = make_hub(CONFIG)
    name, token = hub.create_user(unique_name("sim"))

    # nothing has read the inventory yet: this render is the one that used to lack the label
    browser = admin_browser(hub)
    page = browser.get("/hub/spawn")
    browser.close()
    assert page.status_code == 200, page.text[:300]
    label = re.search(r'<label[^>]*for="gemhub-preset-S2".*?</label>', page.text, re.S).group(0)
    assert "0.5 of one A100-80G (40 GiB memory cap) · simulated" in label, label

    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json={"preset": "S2"})
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name)
    body = hub.request("GET", f"/user/{name}/gemhub/gpu", token=token).json()
    assert (body["simulated"], body["kind"], body["error"]) == (True, "fraction", None)
    (device,) = body["devices"]
    assert (device["memory_limit_mib"], device["compute_percent"]) == (40960, 50)
    assert (device["utilization_percent"], device["memory_used_mib"], device["temperature_c"],
            device["power_w"]) == (None, None, None, None)

    metrics = hub.api("GET", "/gemhub/metrics").text
    lines = metrics.splitlines()
    assert any(line.startswith("gemhub_accelerator_memory_total_mib{") and 'simulated="true"' in line
               for line in lines), metrics
    assert not [line for line in lines if line.startswith(("DCGM_FI_DEV_GPU_UTIL{", "DCGM_FI_DEV_FB_USED{",
                                                           "DCGM_FI_DEV_GPU_TEMP{"))], metrics
    hub.api("DELETE", f"/users/{name}/server")
    hub.wait_stopped(name)
