"""Waiting for quota in a real browser: a workspace with a 1-GPU quota, its first member's
server holds it, the second member's spawn page shows "waiting for quota: 1st of 1", and
that server starts by itself when the first one stops; the workspace page shows who uses
what. Screenshots go to test-artifacts/quota-queue/."""

from __future__ import annotations

import os

import pytest

from browser import chromium_page, signup_and_login
from gemhub.spawner.local import accounts, names
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "Gem-pass-4821"
API = "/services/quota/api/v1"


def test_second_spawn_waits_for_quota_and_starts_by_itself(ledger_hub, artifacts):
    hub = ledger_hub
    shots = artifacts / "quota-queue"
    first, first_token = hub.create_user(unique_name("qa"))
    second, _ = hub.create_user(unique_name("qb"))
    team = unique_name("team")
    r = hub.request("POST", f"{API}/workspaces", token=first_token, json={"name": team})
    assert r.status_code == 201, r.text
    ws = r.json()["id"]
    assert hub.request("POST", f"{API}/workspaces/{ws}/members", token=first_token,
                       json={"username": second}).status_code == 201
    r = hub.request("PUT", f"{API}/workspaces/{ws}/quota", token=hub.admin_token,
                    json={"quota": {"accelerators": {"A100-80G": 1}}})
    assert r.status_code == 200, r.text
    try:
        r = hub.api("POST", f"/users/{first}/server", json={"workspace": team, "preset": "A1"})
        assert r.status_code in (201, 202), r.text
        hub.wait_server(first)
        with chromium_page(shots) as page:
            signup_and_login(page, hub.url, second, PASSWORD)
            page.goto(f"{hub.url}/hub/spawn")
            page.select_option("#gemhub-workspace", label=team)
            page.check("#gemhub-preset-A1")
            page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
            page.wait_for_selector("#progress-message:has-text('waiting for quota: 1st of 1')", timeout=60_000)
            page.screenshot(path=str(shots / "01-waiting-for-quota.png"), full_page=True)

            usage = page.context.new_page()
            usage.goto(f"{hub.url}/services/quota/workspaces/{ws}")
            usage.wait_for_selector(f"#usage-running td:has-text('{first}')")
            usage.wait_for_selector("#usage-queued td:has-text('waiting for quota: 1st of 1')")
            row = usage.locator("#usage tr[data-resource='A100-80G']").inner_text()
            assert row.split() == ["A100-80G", "1", "1", "0"], row
            usage.screenshot(path=str(shots / "02-workspace-usage.png"), full_page=True)
            usage.close()

            assert hub.api("DELETE", f"/users/{first}/server").status_code in (202, 204)
            page.wait_for_url(f"**/user/{second}/lab**", timeout=120_000)
            page.wait_for_selector(".jp-Launcher, .jp-LabShell", timeout=60_000)
            page.screenshot(path=str(shots / "03-started-by-itself.png"), full_page=True)
        env = hub.api("GET", f"/users/{second}").json()["servers"][""]
        assert env["ready"] and env["user_options"]["workspace_id"] == ws
    finally:
        for name in (first, second):
            hub.api("DELETE", f"/users/{name}/server")
        for name in (first, second):
            hub.wait_stopped(name)
            if os.geteuid() == 0:
                accounts.remove_empty_groups(accounts.remove_user(names.unix_name(name)))
