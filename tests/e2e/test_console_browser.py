"""The hub admin's console, in Chromium (issue 14).

A user makes a team workspace and runs a named server in it. The admin (not a member)
opens the console from the nav bar, finds the workspace by searching, sees its member and
running server, opens it, is refused a zero-minute run-time limit with the quota service's
reason (nothing changes), saves presets B1 and S1 with a 45-minute limit, and stops the
server from the console. The Users tab shows the user's workspaces, and pages. A signed-up
user who is not an admin has no console link and is refused the page. Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import pytest

from browser import chromium_page, signup_and_login
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

QUOTA = "/services/quota/api/v1"


def login_admin(page, hub) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", "admin")
    page.fill("#password_input", hub.admin_password)
    page.click("#login_submit")
    page.wait_for_url(lambda u: "/hub/login" not in u)


def test_admin_finds_limits_and_stops_a_workspace_from_the_console(hub, artifacts):
    shots = artifacts / "console"
    owner, token = hub.create_user(unique_name("own"))
    team = unique_name("team-")
    r = hub.request("POST", f"{QUOTA}/workspaces", token=token, json={"name": team})
    assert r.status_code == 201, r.text
    ws = r.json()
    r = hub.request("POST", f"/hub/api/users/{owner}/servers/train", token=token,
                    json={"workspace": team, "preset": "B1"})
    assert r.status_code in (201, 202), r.text
    hub.wait_server(owner, "train")
    # JupyterHub's own admin panel shows the preset in its Profile column
    assert hub.api("GET", f"/users/{owner}").json()["servers"]["train"]["user_options"]["profile"] == "B1"

    with chromium_page(shots) as page:
        login_admin(page, hub)
        # JupyterHub's own admin panel: its Profile column shows the server's preset
        page.goto(f"{hub.url}/hub/admin")
        page.fill("input[name=user_search]", owner)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=user-row-profile-used]')]"
                               ".some(e => e.textContent === 'B1')")
        page.screenshot(path=str(shots / "00-admin-panel-profile.png"), full_page=True)
        page.goto(f"{hub.url}/hub/home")
        page.click("#gemhub-nav-console")
        page.wait_for_selector("#gemhub-workspaces")
        page.fill("#gemhub-search", team)
        page.click("#gemhub-console-search button[type=submit]")
        ws_row = page.locator(f"tr.gemhub-workspace[data-workspace-id='{ws['id']}']")
        ws_row.wait_for()
        assert page.locator("tr.gemhub-workspace").count() == 1
        assert ws_row.locator(".gemhub-members").inner_text() == f"{owner} (owner)"
        assert ws_row.locator(".gemhub-running").inner_text() == f"{owner}/train · B1"
        assert ws_row.locator(".gemhub-usage").inner_text() == "1 server · 1 CPU · 2G"
        page.screenshot(path=str(shots / "01-workspaces.png"), full_page=True)

        ws_row.locator(".gemhub-open-workspace").click()
        page.wait_for_selector("#gemhub-limits-form")
        assert page.inner_text("#gemhub-workspace-title").startswith(team)
        server = page.locator(f"tr.gemhub-server[data-user='{owner}'][data-server='train']")
        assert server.locator(".gemhub-server-preset").inner_text() == "B1"
        assert "UTC" in server.locator(".gemhub-server-since").inner_text()

        # bad input (the form's own min bypassed): the quota service's reason, nothing changes
        page.eval_on_selector("#gemhub-limits-minutes", "e => { e.removeAttribute('min'); e.value = '0'; }")
        page.click("#gemhub-limits-save")
        page.wait_for_selector("#gemhub-console-error")
        assert "between 1 and 525600" in page.inner_text("#gemhub-console-error")
        after = hub.request("GET", f"{QUOTA}/workspaces/{ws['id']}", token=token).json()
        assert (after["allowed_presets"], after["max_runtime_minutes"]) == (None, None)
        page.screenshot(path=str(shots / "02-refused.png"), full_page=True)

        # presets B1 and S1, 45 minutes
        page.uncheck("#gemhub-limits-all")
        page.check("#gemhub-limits-preset-B1")
        page.check("#gemhub-limits-preset-S1")
        page.fill("#gemhub-limits-minutes", "45")
        page.click("#gemhub-limits-save")
        page.wait_for_selector("#gemhub-console-notice")
        assert "B1, S1" in page.inner_text("#gemhub-console-notice")
        assert "45 minutes" in page.inner_text("#gemhub-console-notice")
        saved = hub.request("GET", f"{QUOTA}/workspaces/{ws['id']}", token=token).json()
        limits = (saved["allowed_presets"], saved["custom_spec"], saved["max_runtime_minutes"])
        assert limits == (["B1", "S1"], False, 45)
        assert page.is_checked("#gemhub-limits-preset-S1") and not page.is_checked("#gemhub-limits-all")
        page.screenshot(path=str(shots / "03-limits-saved.png"), full_page=True)

        # stop the server from the console
        page.once("dialog", lambda d: d.accept())
        page.locator(f"tr.gemhub-server[data-user='{owner}'][data-server='train'] .gemhub-stop").click()
        page.wait_for_selector("#gemhub-console-notice:has-text('Stopped')")
        assert page.inner_text("#gemhub-console-notice") == f"Stopped {owner}/train"
        assert "train" not in hub.api("GET", f"/users/{owner}").json()["servers"]
        assert "No running servers" in page.inner_text("table.gemhub-servers")
        page.screenshot(path=str(shots / "04-stopped.png"), full_page=True)

        # the Users tab: workspaces and lock state of a user; paging
        page.click("#gemhub-tab-users")
        page.fill("#gemhub-search", owner)
        page.click("#gemhub-console-search button[type=submit]")
        user_row = page.locator(f"tr.gemhub-user[data-user='{owner}']")
        user_row.wait_for()
        workspaces = user_row.locator(".gemhub-user-workspaces").inner_text()
        assert f"{team} (owner)" in workspaces and f"{owner} (owner)" in workspaces
        assert user_row.locator(".gemhub-user-lock").inner_text().strip() == "not locked"
        page.goto(f"{hub.url}/hub/gemhub/admin/users?limit=1")
        assert page.locator("tr.gemhub-user").count() == 1 and page.locator(".gemhub-next").count() == 1
        page.screenshot(path=str(shots / "05-users.png"), full_page=True)
        r = page.goto(f"{hub.url}/hub/gemhub/admin/users?limit=1000")
        assert r.status == 400 and "limit must be a whole number from 1 to 100" in page.content()

        # only hub admins: no nav link, and the page refuses
        page.goto(f"{hub.url}/hub/logout")
        signup_and_login(page, hub.url, unique_name("nosy"), "Nosy-Pass-2026")
        assert page.locator("#gemhub-nav-console").count() == 0
        r = page.goto(f"{hub.url}/hub/gemhub/admin/workspaces")
        assert r.status == 403 and "only hub administrators" in page.content()
        # nor may such a user act through it, with a valid xsrf token and all
        xsrf = page.evaluate("window.jhdata.xsrf_token")
        r = page.request.post(f"{hub.url}/hub/gemhub/admin/workspaces/{ws['id']}",
                              form={"_xsrf": xsrf, "action": "limits", "all_presets": "1", "minutes": "1"})
        assert r.status == 403 and "only hub administrators" in r.text()
    assert hub.request("GET", f"{QUOTA}/workspaces/{ws['id']}", token=token).json()["max_runtime_minutes"] == 45
