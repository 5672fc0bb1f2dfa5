"""Workspace preset limits in the quota service: only hub admins set them, names are checked,
every change is audited, and resolve hands them to the spawner."""

from __future__ import annotations

import sqlite3

import pytest
from test_quota_support import QuotaUnderTest

PRESETS = ["B1", "S1", "P1"]


@pytest.fixture
async def q(tmp_path):
    async with QuotaUnderTest(tmp_path, preset_names=PRESETS) as svc:
        yield svc


async def _workspace(q, token) -> int:
    r = await q.call("POST", "api/v1/workspaces", token, json={"name": "team"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_defaults_are_every_preset_and_no_custom_spec(q):
    alice = q.user("alice")
    wid = await _workspace(q, alice)
    ws = (await q.call("GET", f"api/v1/workspaces/{wid}", alice)).json()
    assert ws["allowed_presets"] is None and ws["custom_spec"] is False
    r = await q.call("GET", "api/v1/resolve", "service-token", params={"user": "alice", "workspace": "team"})
    assert r.json()["workspace"]["allowed_presets"] is None and r.json()["workspace"]["custom_spec"] is False


async def test_workspace_owner_who_is_not_hub_admin_is_refused(q):
    alice = q.user("alice")
    wid = await _workspace(q, alice)
    r = await q.call("PATCH", f"api/v1/workspaces/{wid}", alice, json={"allowed_presets": ["B1"]})
    assert r.status_code == 403 and "hub administrators" in r.json()["message"]
    r = await q.call("PATCH", f"api/v1/workspaces/{wid}", alice, json={"custom_spec": True, "name": "x2"})
    assert r.status_code == 403
    ws = (await q.call("GET", f"api/v1/workspaces/{wid}", alice)).json()
    assert (ws["name"], ws["allowed_presets"], ws["custom_spec"]) == ("team", None, False)


async def test_hub_admin_sets_limits_without_membership_and_it_is_audited(q, tmp_path):
    alice, root = q.user("alice"), q.user("root")
    q.hub.admins.add("root")
    wid = await _workspace(q, alice)
    r = await q.call("PATCH", f"api/v1/workspaces/{wid}", root,
                     json={"allowed_presets": ["B1", "S1"], "custom_spec": True})
    assert r.status_code == 200, r.text
    assert r.json()["allowed_presets"] == ["B1", "S1"] and r.json()["custom_spec"] is True
    assert r.json()["role"] is None  # the admin is not a member
    listed = (await q.call("GET", "api/v1/workspaces", alice, params={"include_projects": "1"})).json()
    team = next(w for w in listed["items"] if w["id"] == wid)
    assert team["allowed_presets"] == ["B1", "S1"] and team["custom_spec"] is True
    r = await q.call("GET", "api/v1/resolve", "service-token", params={"user": "alice", "workspace_id": str(wid)})
    assert r.json()["workspace"]["allowed_presets"] == ["B1", "S1"]
    page = await q.call("GET", f"workspaces/{wid}", alice)
    assert page.status_code == 200 and "Presets:\n  B1, S1" in page.text, page.text
    assert "custom accelerator specs: allowed" in page.text
    # back to every preset
    r = await q.call("PATCH", f"api/v1/workspaces/{wid}", root, json={"allowed_presets": None})
    assert r.status_code == 200 and r.json()["allowed_presets"] is None and r.json()["custom_spec"] is True
    with sqlite3.connect(tmp_path / "quota.sqlite") as db:
        events = db.execute("SELECT actor, action, target, detail FROM audit_events "
                            "WHERE action = 'workspace.presets' ORDER BY id").fetchall()
    assert [(a, t) for a, _, t, _ in events] == [("root", f"workspace:{wid}")] * 2
    assert '"allowed_presets": ["B1", "S1"]' in events[0][3]


@pytest.mark.parametrize("body,status,needle", [
    ({"allowed_presets": ["B1", "XL"]}, 400, "'XL'"),
    ({"allowed_presets": "B1"}, 400, "list of preset names"),
    ({"allowed_presets": [1]}, 400, "list of preset names"),
    ({"allowed_presets": ["B1", "B1"]}, 400, "twice"),
    ({"custom_spec": "yes"}, 400, "true or false"),
    ({"allowed_presets": ["B1"], "custom_spec": 1}, 400, "true or false"),
    ({}, 400, "nothing to change"),
])
async def test_bad_limits_are_400_and_change_nothing(q, body, status, needle):
    alice, root = q.user("alice"), q.user("root")
    q.hub.admins.add("root")
    wid = await _workspace(q, alice)
    r = await q.call("PATCH", f"api/v1/workspaces/{wid}", root, json=body)
    assert r.status_code == status and needle in r.json()["message"], r.text
    ws = (await q.call("GET", f"api/v1/workspaces/{wid}", alice)).json()
    assert ws["allowed_presets"] is None and ws["custom_spec"] is False


async def test_unknown_workspace_is_404_for_admin(q):
    root = q.user("root")
    q.hub.admins.add("root")
    r = await q.call("PATCH", "api/v1/workspaces/999", root, json={"custom_spec": True})
    assert r.status_code == 404


async def test_without_preset_list_names_cannot_be_checked(tmp_path):
    async with QuotaUnderTest(tmp_path) as q:
        root = q.user("root")
        q.hub.admins.add("root")
        wid = await _workspace(q, root)
        r = await q.call("PATCH", f"api/v1/workspaces/{wid}", root, json={"allowed_presets": ["B1"]})
        assert r.status_code == 400 and "preset_names" in r.json()["message"]
