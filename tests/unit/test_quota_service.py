"""The quota service in-process over HTTP (real handlers, DB, migrations; fake hub identity)."""

from __future__ import annotations

import sqlite3

import pytest
from test_quota_support import QuotaUnderTest

from gemhub.spawner.layout import project_dirs


@pytest.fixture
async def q(tmp_path):
    async with QuotaUnderTest(tmp_path) as svc:
        yield svc


async def test_anonymous_gets_401_json(q):
    r = await q.call("GET", "api/v1/workspaces")
    assert r.status_code == 401
    assert r.json()["status"] == 401 and "authentication" in r.json()["message"]


async def test_user_without_access_scope_gets_403(q):
    r = await q.call("GET", "api/v1/workspaces", "no-scope")
    assert r.status_code == 403


async def test_browser_page_redirects_to_login(q):
    r = await q.call("GET", "")
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize" in r.headers["location"]


async def test_personal_workspace_made_once_with_default_project(q):
    alice = q.user("alice")
    for _ in range(2):
        r = await q.call("GET", "api/v1/workspaces", alice, params={"include_projects": "1"})
        assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) == 1
    ws = items[0]
    assert (ws["name"], ws["personal"], ws["role"]) == ("alice", True, "owner")
    assert [p["name"] for p in ws["projects"]] == ["default"]
    code, output = project_dirs(q.state_dir, ws["id"], ws["projects"][0]["id"])
    assert code.is_dir() and output.is_dir()
    assert code.stat().st_mode & 0o7777 == 0o2775
    assert q.hub.groups[f"ws-{ws['id']}"] == ["alice"]


async def test_personal_name_taken_gets_suffix(q):
    bob = q.user("bob")
    r = await q.call("POST", "api/v1/workspaces", bob, json={"name": "carol"})
    assert r.status_code == 201
    carol = q.user("carol")
    r = await q.call("GET", "api/v1/workspaces", carol)
    assert [w["name"] for w in r.json()["items"]] == ["carol-personal"]


@pytest.mark.parametrize("body,needle", [
    ({"name": ""}, "empty"), ({"name": "   "}, "empty"), ({"name": "x" * 64}, "63"),
    ({"name": "a/b"}, "/"), ({"name": 5}, "string"), ({}, "string"), ([1], "object"),
])
async def test_bad_workspace_names_are_400_and_change_nothing(q, body, needle):
    alice = q.user("alice")
    before = (await q.call("GET", "api/v1/workspaces", alice)).json()["_pagination"]["total"]
    r = await q.call("POST", "api/v1/workspaces", alice, json=body)
    assert r.status_code == 400 and needle in r.json()["message"]
    assert (await q.call("GET", "api/v1/workspaces", alice)).json()["_pagination"]["total"] == before


async def test_invalid_json_is_400(q):
    alice = q.user("alice")
    r = await q.call("POST", "api/v1/workspaces", alice, content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["message"]


async def test_workspace_lifecycle_and_roles(q):
    owner, admin, member, outsider = (q.user(n) for n in ("o", "a", "m", "x"))
    r = await q.call("POST", "api/v1/workspaces", owner, json={"name": " team "})
    assert r.status_code == 201
    ws = r.json()
    assert ws["name"] == "team" and ws["role"] == "owner"
    wid = ws["id"]
    assert (await q.call("POST", "api/v1/workspaces", owner, json={"name": "team"})).status_code == 409

    for user, role in (("a", "admin"), ("m", "member")):
        r = await q.call("POST", f"api/v1/workspaces/{wid}/members", owner, json={"username": user, "role": role})
        assert r.status_code == 201, r.text
    assert sorted(q.hub.groups[f"ws-{wid}"]) == ["a", "m", "o"]
    r = await q.call("POST", f"api/v1/workspaces/{wid}/members", owner, json={"username": "ghost"})
    assert r.status_code == 400 and "ghost" in r.json()["message"]

    # outsider: 404 everywhere, like an unknown workspace (its existence is not revealed)
    for method, path, body in (
        ("GET", f"api/v1/workspaces/{wid}", None), ("PATCH", f"api/v1/workspaces/{wid}", {"name": "z"}),
        ("DELETE", f"api/v1/workspaces/{wid}", None), ("GET", f"api/v1/workspaces/{wid}/projects", None),
        ("POST", f"api/v1/workspaces/{wid}/projects", {"name": "p"}),
        ("GET", f"api/v1/workspaces/{wid}/members", None),
    ):
        r = await q.call(method, path, outsider, json=body)
        assert r.status_code == 404 and r.json()["message"] == f"workspace {wid} does not exist", (method, path, r.text)
    assert (await q.call("GET", "api/v1/workspaces/999999", owner)).status_code == 404

    # member: view, create projects; nothing else
    r = await q.call("POST", f"api/v1/workspaces/{wid}/projects", member, json={"name": "exp1"})
    assert r.status_code == 201
    pid = r.json()["id"]
    assert (await q.call("POST", f"api/v1/workspaces/{wid}/projects", member, json={"name": "exp1"})).status_code == 409
    assert (await q.call("PATCH", f"api/v1/workspaces/{wid}/projects/{pid}", member,
                         json={"name": "e"})).status_code == 403
    assert (await q.call("PATCH", f"api/v1/workspaces/{wid}", member, json={"name": "y"})).status_code == 403
    assert (await q.call("POST", f"api/v1/workspaces/{wid}/members", member,
                         json={"username": "x"})).status_code == 403

    # admin: rename, projects, members but not owners
    assert (await q.call("PATCH", f"api/v1/workspaces/{wid}", admin, json={"name": "team2"})).json()["name"] == "team2"
    assert (await q.call("PATCH", f"api/v1/workspaces/{wid}/projects/{pid}", admin,
                         json={"name": "exp2"})).json()["name"] == "exp2"
    assert (await q.call("PATCH", f"api/v1/workspaces/{wid}/members/o", admin,
                         json={"role": "member"})).status_code == 403
    assert (await q.call("PATCH", f"api/v1/workspaces/{wid}/members/m", admin,
                         json={"role": "owner"})).status_code == 403
    assert (await q.call("DELETE", f"api/v1/workspaces/{wid}", admin)).status_code == 403
    # last owner stays
    r = await q.call("PATCH", f"api/v1/workspaces/{wid}/members/o", owner, json={"role": "admin"})
    assert r.status_code == 409 and "owner" in r.json()["message"]

    # a running server blocks deletion
    q.hub.servers.append({"user": "m", "server": "", "user_options": {"workspace_id": wid, "project_id": pid}})
    r = await q.call("DELETE", f"api/v1/workspaces/{wid}/projects/{pid}", owner)
    assert r.status_code == 409 and "running" in r.json()["message"]
    r = await q.call("DELETE", f"api/v1/workspaces/{wid}", owner)
    assert r.status_code == 409
    q.hub.servers.clear()
    assert (await q.call("DELETE", f"api/v1/workspaces/{wid}/projects/{pid}", owner)).status_code == 204
    assert (await q.call("DELETE", f"api/v1/workspaces/{wid}", owner)).status_code == 204
    assert q.hub.groups[f"ws-{wid}"] is None
    assert (await q.call("GET", f"api/v1/workspaces/{wid}", owner)).status_code == 404

    # the audit trail
    con = sqlite3.connect(q.service.db_url.removeprefix("sqlite:///"))
    actions = [a for (a,) in con.execute("select action from audit_events order by id")]
    con.close()
    for action in ("workspace.create", "member.add", "project.create", "workspace.rename",
                   "project.rename", "project.delete", "workspace.delete"):
        assert action in actions


async def test_personal_workspace_cannot_be_deleted(q):
    alice = q.user("alice")
    wid = (await q.call("GET", "api/v1/workspaces", alice)).json()["items"][0]["id"]
    r = await q.call("DELETE", f"api/v1/workspaces/{wid}", alice)
    assert r.status_code == 409 and "personal" in r.json()["message"]


async def test_member_can_leave(q):
    owner, member = q.user("o"), q.user("m")
    wid = (await q.call("POST", "api/v1/workspaces", owner, json={"name": "w"})).json()["id"]
    await q.call("POST", f"api/v1/workspaces/{wid}/members", owner, json={"username": "m"})
    elsewhere = {"user": "m", "server": "gpu", "user_options": {"workspace_id": wid + 1000}}
    q.hub.servers += [{"user": "m", "server": "", "user_options": {"workspace_id": wid}}, elsewhere]
    assert (await q.call("DELETE", f"api/v1/workspaces/{wid}/members/m", member)).status_code == 204
    assert (await q.call("GET", f"api/v1/workspaces/{wid}", member)).status_code == 404
    assert q.hub.servers == [elsewhere]  # the server in the workspace left is stopped, no other


async def test_resolve_internal_caller(q):
    q.user("alice")
    r = await q.call("GET", "api/v1/resolve", "service-token", params={"user": "alice"})
    assert r.status_code == 200
    data = r.json()
    assert data["workspace"]["name"] == "alice" and data["project"]["name"] == "default"
    r = await q.call("GET", "api/v1/resolve", "service-token",
                     params={"user": "alice", "workspace": "alice", "project": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["message"]
    bob = q.user("bob")
    await q.call("POST", "api/v1/workspaces", bob, json={"name": "bobs"})
    r = await q.call("GET", "api/v1/resolve", "service-token", params={"user": "alice", "workspace": "bobs"})
    assert r.status_code == 404  # names are looked up among alice's own workspaces only
    bobs_id = (await q.call("GET", "api/v1/workspaces", bob)).json()["items"]
    bobs_id = next(w["id"] for w in bobs_id if w["name"] == "bobs")
    r = await q.call("GET", "api/v1/resolve", "service-token", params={"user": "alice", "workspace_id": bobs_id})
    missing = await q.call("GET", "api/v1/resolve", "service-token", params={"user": "alice", "workspace_id": 2**62})
    # not a member: the same answer as for a workspace that does not exist
    assert r.status_code == missing.status_code == 404
    assert r.json()["message"] == missing.json()["message"].replace(str(2**62), str(bobs_id))
    for bad in ("²", "-1", "9" * 30, "1e3", str(2**63)):
        r = await q.call("GET", "api/v1/resolve", "service-token", params={"user": "alice", "workspace_id": bad})
        assert r.status_code == 400, bad
    assert (await q.call("GET", "api/v1/resolve", "service-token")).status_code == 400
    # only the service itself may act for others
    r = await q.call("GET", "api/v1/workspaces", bob, params={"user": "alice"})
    assert r.status_code == 403
    r = await q.call("GET", "api/v1/workspaces", "other-service", params={"user": "alice"})
    assert r.status_code == 403


async def test_pages_render_with_ids(q):
    alice = q.user("alice")
    r = await q.call("GET", "", alice)
    assert r.status_code == 200
    for marker in ('id="workspaces"', 'id="create-workspace"', 'name="name"'):
        assert marker in r.text
    wid = (await q.call("GET", "api/v1/workspaces", alice)).json()["items"][0]["id"]
    r = await q.call("GET", f"workspaces/{wid}", alice)
    for marker in ('id="projects"', 'id="create-project"', 'id="members"', 'id="add-member"', 'id="member-name"',
                   'id="rename-workspace"'):
        assert marker in r.text
    r = await q.call("GET", "workspaces/424242", alice)
    assert r.status_code == 404 and "does not exist" in r.text


async def test_health_metrics_openapi_unknown(q):
    assert (await q.call("GET", "health")).json()["status"] == "ok"
    doc = (await q.call("GET", "api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/workspaces/{ws_id}/projects" in doc["paths"]
    await q.call("GET", "api/v1/workspaces")
    text = (await q.call("GET", "metrics")).text
    assert "gemhub_service_requests_total" in text
    r = await q.call("GET", "api/v1/nope")
    assert r.status_code == 404 and r.json()["status"] == 404


async def test_pagination(q):
    alice = q.user("alice")
    for i in range(3):
        await q.call("POST", "api/v1/workspaces", alice, json={"name": f"w{i}"})
    r = (await q.call("GET", "api/v1/workspaces", alice, params={"limit": 2})).json()
    assert len(r["items"]) == 2 and r["_pagination"]["total"] == 4 and r["_pagination"]["next"]["offset"] == 2
    r = await q.call("GET", "api/v1/workspaces", alice, params={"limit": "x"})
    assert r.status_code == 400


async def test_hub_admins_list_every_workspace_with_members_search_and_paging(q):
    alice, bob, root = q.user("alice"), q.user("bob"), q.user("root")
    q.hub.admins.add("root")
    team = (await q.call("POST", "api/v1/workspaces", alice, json={"name": "team_a"})).json()
    await q.call("POST", f"api/v1/workspaces/{team['id']}/members", alice, json={"username": "bob"})
    await q.call("GET", "api/v1/workspaces", bob)  # bob's personal workspace
    # not a hub admin: refused, whatever the membership
    r = await q.call("GET", "api/v1/admin/workspaces", alice)
    assert r.status_code == 403 and "hub administrators" in r.json()["message"]
    r = await q.call("GET", "api/v1/admin/workspaces", root)
    names = {w["name"]: w for w in r.json()["items"]}
    assert {"alice", "team_a", "bob", "root"} <= set(names)
    assert [(m["username"], m["role"]) for m in names["team_a"]["members"]] == [("alice", "owner"), ("bob", "member")]
    assert names["team_a"]["role"] is None and names["team_a"]["project_count"] == 1
    # search: a part of a workspace's name or of a member's; "_" is a character, not a wildcard
    r = await q.call("GET", "api/v1/admin/workspaces", root, params={"search": "M_A"})
    assert [w["name"] for w in r.json()["items"]] == ["team_a"]
    r = await q.call("GET", "api/v1/admin/workspaces", root, params={"search": "bo"})
    assert sorted(w["name"] for w in r.json()["items"]) == ["bob", "team_a"]
    r = await q.call("GET", "api/v1/admin/workspaces", root, params=[("member", "bob"), ("member", "nobody")])
    assert sorted(w["name"] for w in r.json()["items"]) == ["bob", "team_a"]
    r = (await q.call("GET", "api/v1/admin/workspaces", root, params={"limit": 1, "offset": 1})).json()
    assert len(r["items"]) == 1 and r["_pagination"]["total"] == 4 and r["_pagination"]["next"]["offset"] == 2
    # the internal caller acting for a hub admin (the hub's console), one workspace in full
    r = await q.call("GET", f"api/v1/admin/workspaces/{team['id']}", "service-token", params={"user": "root"})
    assert r.status_code == 200 and [p["name"] for p in r.json()["projects"]] == ["default"]
    assert (await q.call("GET", "api/v1/admin/workspaces/999", root)).status_code == 404
    r = await q.call("GET", "api/v1/admin/workspaces", root, params={"search": "x" * 64})
    assert r.status_code == 400 and "at most 63" in r.json()["message"]
