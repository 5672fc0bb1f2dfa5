"""A hub admin limits a user's workspace from its page, in a real browser.

The admin opens the user's personal workspace page (not being a member), is refused a
negative run-time limit with the service's message (nothing changes), then allows only
preset B1, forbids custom specs and sets 30 minutes. The member's spawn page greys the
other presets with the reason, a REST spawn of S1 is refused, and the member's own view of
the page has no limits form. Screenshots go to test-artifacts/limits/.
"""

from __future__ import annotations

import pytest

from browser import chromium_page, signup_and_login
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = "Gem-pass-7305"
QUOTA = "/services/quota/api/v1"


def login_admin(page, hub) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", "admin")
    page.fill("#password_input", hub.admin_password)
    page.click("#login_submit")
    page.wait_for_url(lambda u: "/hub/login" not in u)


def test_admin_limits_a_workspace_from_its_page(hub, artifacts):
    shots = artifacts / "limits"
    name, token = hub.create_user(unique_name("lim"))
    ws = hub.request("GET", f"{QUOTA}/workspaces", token=token).json()["items"][0]
    ws_page = f"{hub.url}/services/quota/workspaces/{ws['id']}"
    before = hub.request("GET", f"{QUOTA}/workspaces/{ws['id']}", token=token).json()
    assert before["allowed_presets"] is None and before["max_runtime_minutes"] is None

    with chromium_page(shots) as page:
        login_admin(page, hub)
        page.goto(ws_page)
        page.wait_for_selector("#limits-form")
        assert page.inner_text("#my-role") == "hub admin"
        assert page.is_checked("#limits-all-presets") and page.is_disabled("#limits-preset-S1")
        page.screenshot(path=str(shots / "01-admin-form.png"), full_page=True)

        # bad input: the form itself refuses it (min 1), in words, and nothing changes
        page.fill("#limits-minutes", "-5")
        page.uncheck("#limits-all-presets")
        page.uncheck("#limits-preset-S1")
        page.click("#save-limits")
        assert page.eval_on_selector("#limits-minutes", "e => e.validity.rangeUnderflow")
        assert "minutes after it starts" in page.inner_text("#limits-form")
        assert "max_runtime_minutes" not in page.inner_text("#limits-form")
        page.screenshot(path=str(shots / "02-bad-minutes.png"), full_page=True)
        after = hub.request("GET", f"{QUOTA}/workspaces/{ws['id']}", token=token).json()
        assert after == before
        # the service still refuses what a script sends, naming the limit in words
        r = hub.request("PATCH", f"{QUOTA}/workspaces/{ws['id']}", token=hub.admin_token,
                        json={"max_runtime_minutes": -5})
        assert r.status_code == 400 and "run-time limit" in r.json()["message"], r.text

        # only B1, no custom specs, 30 minutes
        page.goto(ws_page)
        page.uncheck("#limits-all-presets")
        for box in page.locator(".limits-preset").all():
            box.uncheck()
        page.check("#limits-preset-B1")
        page.uncheck("#limits-custom-spec")
        page.fill("#limits-minutes", "30")
        with page.expect_navigation():
            page.click("#save-limits")
        page.wait_for_selector("#runtime-limit")
        assert "30 minutes" in page.inner_text("#runtime-limit")
        shown = page.inner_text("#preset-limits")
        assert "Presets: B1" in shown and "custom accelerator specs: not allowed" in shown
        assert page.is_checked("#limits-preset-B1") and not page.is_checked("#limits-preset-S1")
        assert page.input_value("#limits-minutes") == "30"
        page.screenshot(path=str(shots / "03-saved.png"), full_page=True)
        saved = hub.request("GET", f"{QUOTA}/workspaces/{ws['id']}", token=token).json()
        assert (saved["allowed_presets"], saved["custom_spec"], saved["max_runtime_minutes"]) == (["B1"], False, 30)

        # the member: greyed presets with the reason, no limits form
        page.goto(f"{hub.url}/hub/logout")
        signup_and_login(page, hub.url, name, PASSWORD)
        page.goto(f"{hub.url}/hub/spawn")
        assert page.is_enabled("#gemhub-preset-B1") and page.is_checked("#gemhub-preset-B1")
        assert page.is_disabled("#gemhub-preset-S1")
        assert "not allowed in workspace" in page.inner_text("label[for=gemhub-preset-S1]")
        page.screenshot(path=str(shots / "04-member-spawn.png"), full_page=True)
        page.goto(ws_page)
        page.wait_for_selector("#preset-limits")
        assert page.locator("#limits-form").count() == 0
        page.screenshot(path=str(shots / "05-member-workspace.png"), full_page=True)

    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json={"preset": "S1"})
    assert r.status_code == 400 and "may not use preset 'S1'" in r.json()["message"], r.text
    # the API still refuses a member who is not a hub admin
    r = hub.request("PATCH", f"{QUOTA}/workspaces/{ws['id']}", token=token, json={"max_runtime_minutes": 5})
    assert r.status_code == 403, r.text
