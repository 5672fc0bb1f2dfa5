"""The spawn page: LocalGemSpawner's options form in a real hub, submitted like a browser would."""

from __future__ import annotations

import html as htmllib
import os
import re

import httpx
import pytest

from gemhub.spawner.local import accounts, names
from hubproc import unique_name

pytestmark = [pytest.mark.integration]

PASSWORD = "Gem-pass-4821"


@pytest.fixture
def person(hub):
    """A hub user with a logged-in cookie session; their unix account is removed afterwards."""
    name = unique_name("sf")
    c = httpx.Client(base_url=hub.url, timeout=30, follow_redirects=False)

    def post(path, data):
        page = c.get(path)
        assert page.status_code == 200, page.text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        return c.post(path, data={**data, **({"_xsrf": xsrf.group(1)} if xsrf else {})})

    hub.create_user(name)
    if c.get("/hub/signup").status_code == 200:
        post("/hub/signup", {"username": name, "signup_password": PASSWORD,
                             "signup_password_confirmation": PASSWORD})
    r = post("/hub/login", {"username": name, "password": PASSWORD})
    assert r.status_code == 302, r.text
    yield name, c
    c.close()
    hub.api("DELETE", f"/users/{name}/server")
    if os.geteuid() == 0:
        accounts.remove_empty_groups(accounts.remove_user(names.unix_name(name)))


def _selected(html: str, select_name: str) -> str:
    block = re.search(rf'<select[^>]*name="{select_name}"[^>]*>(.*?)</select>', html, re.S).group(1)
    return htmllib.unescape(re.search(r'<option value="([^"]*)"[^>]*\sselected>', block).group(1))


def test_form_lists_choices_and_starts_the_chosen_server(hub, person):
    name, c = person
    page = c.get("/hub/spawn")
    assert page.status_code == 200, page.text
    html = page.text
    assert re.search(r'<select[^>]*name="workspace_id"', html)
    assert re.search(r'<select[^>]*name="project_id"', html)
    assert re.search(r'<input[^>]*type="radio" name="preset"[^>]*value="B1"[^>]*checked', html)
    assert re.search(r'<input[^>]*type="radio" name="preset"[^>]*value="S1"', html)
    assert "Manage workspaces" in html and 'href="/services/quota/"' in html
    ws, project = _selected(html, "workspace_id"), _selected(html, "project_id")
    assert ws.isdigit() and project.isdigit()  # ids: the form never sends names
    assert re.search(rf'<option value="{ws}" data-name="{name}(-personal)?" selected>', html)
    # the spawn form carries its _xsrf token in its action URL
    action = htmllib.unescape(re.search(r'<form[^>]*action="([^"]+)"', html).group(1))

    # a bad choice comes back as the form with the message, never a traceback
    r = c.post(action, data={"workspace_id": ws, "project_id": project, "preset": "XL"})
    assert r.status_code == 400, r.text
    assert "unknown preset" in r.text and "Traceback" not in r.text
    assert 'name="workspace_id"' in r.text  # the form again

    r = c.post(action, data={"workspace_id": ws, "project_id": project, "preset": "S1"})
    assert r.status_code == 302, r.text
    server = hub.wait_server(name)
    opts = server["user_options"]
    assert opts["preset"] == "S1" and opts["workspace_id"] == int(ws) and opts["project_id"] == int(project)

    # the Lab news pop-up is off (labconfig/default_setting_overrides.json)
    token = hub.api("POST", f"/users/{name}/tokens", json={"note": "t"}).json()["token"]
    r = hub.request("GET", f"/user/{name}/lab/api/settings/@jupyterlab/apputils-extension:notification",
                    token=token)
    assert r.status_code == 200, r.text
    assert r.json()["schema"]["properties"]["fetchNews"]["default"] == "false"

    r = hub.api("DELETE", f"/users/{name}/server")
    assert r.status_code in (202, 204)
    hub.wait_stopped(name)

    # the form remembers the last choice
    html = c.get("/hub/spawn").text
    assert re.search(r'<input[^>]*name="preset"[^>]*value="S1"[^>]*checked', html)
