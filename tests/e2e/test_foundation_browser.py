"""What a new user does on day one, in a real browser against a real hub.

Sign up, log in, create a workspace and a project, spawn into it, see JupyterLab, open a
terminal in /gemini/code, write a file that survives a restart, and fail to write to a
read-only dataset folder. Screenshots go to test-artifacts/foundation/.
"""

from __future__ import annotations

import json
import time

import pytest

from browser import chromium_page, signup_and_login
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def lab_file(page, hub_url, user, path):
    """Read a file of /gemini/code the way the Lab front end does (contents API, the browser's session)."""
    r = page.request.get(f"{hub_url}/user/{user}/api/contents/code/{path}?content=1&type=file")
    return r.status, (r.json().get("content") if r.ok else r.text())


def wait_for_file(page, hub_url, user, path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, content = lab_file(page, hub_url, user, path)
        if status == 200 and content:
            return content
        time.sleep(0.5)
    raise AssertionError(f"{path} never appeared in /gemini/code")


def open_terminal_and_run(page, command: str) -> None:
    page.click("text=File")
    page.click("text=New")
    page.click("li[data-command='terminal:create-new']")
    term = page.locator(".jp-Terminal").last
    term.wait_for()
    page.wait_for_selector(".jp-Terminal .xterm-screen")
    time.sleep(1.5)  # the shell prompt
    term.click()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def test_day_one_in_the_browser(hub, artifacts):
    shots = artifacts / "foundation"
    name, password = unique_name("e2e"), "Gemini-Pass-2026"
    ws, project = f"team-{name}", "vision"
    with chromium_page(shots) as page:
        signup_and_login(page, hub.url, name, password)
        page.screenshot(path=str(shots / "01-logged-in.png"))

        # Workspaces and projects live in the quota service's pages (Services menu).
        page.goto(f"{hub.url}/services/quota/")
        page.wait_for_selector("#create-workspace")
        page.fill("#workspace-name", ws)
        page.click("#create-workspace")
        page.click(f"a:has-text('{ws}')")
        page.wait_for_selector("#create-project")
        page.fill("#project-name", project)
        page.click("#create-project")
        page.wait_for_selector(f"#projects >> text={project}")
        project_id = int(page.get_attribute(f"#projects tr[data-project-name='{project}']", "data-project-id"))
        page.screenshot(path=str(shots / "02-workspace-and-project.png"))

        # Spawn page: workspace, project, preset.
        page.goto(f"{hub.url}/hub/spawn")
        page.select_option("select[name=workspace_id]", label=ws)
        page.select_option("select[name=project_id]", label=project)
        page.check("input[name=preset][value=S1]")
        page.screenshot(path=str(shots / "03-spawn-form.png"))
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=60_000)
        page.screenshot(path=str(shots / "04-jupyterlab.png"))

        # The file browser is in /gemini/code.
        crumbs = page.locator(".jp-FileBrowser-crumbs").inner_text()
        assert "code" in crumbs

        open_terminal_and_run(
            page,
            "pwd > where.txt; echo persisted > kept.txt;"
            " touch /gemini/data-1/x 2> ro-error.txt; echo $GEMHUB_PROJECT > project.txt",
        )
        assert wait_for_file(page, hub.url, name, "where.txt").strip() == "/gemini/code"
        assert "Read-only file system" in wait_for_file(page, hub.url, name, "ro-error.txt")
        assert wait_for_file(page, hub.url, name, "project.txt").strip() == project
        page.screenshot(path=str(shots / "05-terminal.png"))

        # Stop and start again from the hub's home page: the code stays.
        page.goto(f"{hub.url}/hub/home")
        page.click("tr.gemhub-server[data-server-name=''] .gemhub-stop")
        page.wait_for_selector("tr.gemhub-server[data-server-name=''] .gemhub-start", timeout=60_000)
        hub.wait_stopped(name)
        page.goto(f"{hub.url}/hub/spawn")
        page.select_option("select[name=workspace_id]", label=ws)
        page.select_option("select[name=project_id]", label=project)
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000)
        page.wait_for_selector(".jp-DirListing-item[title*='kept.txt'], .jp-DirListing-itemText:has-text('kept.txt')")
        assert wait_for_file(page, hub.url, name, "kept.txt").strip() == "persisted"
        page.screenshot(path=str(shots / "06-after-restart.png"))

        model = hub.api("GET", f"/users/{name}").json()
        options = model["servers"][""]["user_options"]
        assert options["project_id"] == project_id, json.dumps(model)  # servers keep ids, not names
