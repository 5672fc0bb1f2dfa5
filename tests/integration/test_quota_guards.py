"""Quota service guards seen from outside: the audit trail of every change, and no deleting
a workspace/project while a server of it runs (the hub's user_options say which)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration

API = "/services/quota/api/v1"


def call(hub, method, path, token=None, **kw):
    return hub.request(method, f"{API}/{path}", token=token, **kw)


def audit_rows(hub, since: int = 0) -> list[tuple]:
    db = Path(hub.state_dir) / "db" / "quota.sqlite"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(
            "select id, actor, action, target, created from audit_events where id > ? order by id", (since,)
        ).fetchall()
    finally:
        con.close()


def test_every_change_is_audited(hub):
    owner, tok = hub.create_user(unique_name("aud"))
    friend, _ = hub.create_user(unique_name("audf"))
    assert call(hub, "GET", "workspaces", tok).status_code == 200  # makes the personal workspace
    mine = [r for r in audit_rows(hub) if r[1] == owner]
    assert [r[2] for r in mine] == ["workspace.create", "project.create"]
    start = max(r[0] for r in audit_rows(hub))

    r = call(hub, "POST", "workspaces", tok, json={"name": unique_name("audws")})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    steps = [
        ("PATCH", f"workspaces/{wid}", {"name": unique_name("audws2")}, 200),
        ("POST", f"workspaces/{wid}/members", {"username": friend, "role": "member"}, 201),
        ("PATCH", f"workspaces/{wid}/members/{friend}", {"role": "admin"}, 200),
        ("DELETE", f"workspaces/{wid}/members/{friend}", None, 204),
        ("POST", f"workspaces/{wid}/projects", {"name": "p1"}, 201),
    ]
    for method, path, body, status in steps:
        r = call(hub, method, path, tok, json=body) if body is not None else call(hub, method, path, tok)
        assert r.status_code == status, r.text
    pid = r.json()["id"]
    for method, path, body, status in [
        ("PATCH", f"workspaces/{wid}/projects/{pid}", {"name": "p2"}, 200),
        ("DELETE", f"workspaces/{wid}/projects/{pid}", None, 204),
        ("DELETE", f"workspaces/{wid}", None, 204),
    ]:
        r = call(hub, method, path, tok, json=body) if body is not None else call(hub, method, path, tok)
        assert r.status_code == status, r.text

    rows = [r for r in audit_rows(hub, start) if r[1] == owner]
    assert [r[2] for r in rows] == [
        "workspace.create", "project.create",  # a new workspace comes with project "default"
        "workspace.rename", "member.add", "member.change", "member.remove",
        "project.create", "project.rename", "project.delete", "workspace.delete",
    ]
    assert all(r[3] for r in rows)  # a target on every event
    assert all(r[4] for r in rows)  # and a time

    # refusals change nothing and leave no audit event
    before = audit_rows(hub)[-1][0]
    assert call(hub, "POST", "workspaces", tok, json={"name": "a/b"}).status_code == 400
    assert call(hub, "POST", "workspaces", tok, json={"name": "x" * 64}).status_code == 400
    assert all(r[1] != owner for r in audit_rows(hub, before))


def _start(hub, name, token, options) -> None:
    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json=options)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name, timeout=120)


def _stop(hub, name, token) -> None:
    r = hub.request("DELETE", f"/hub/api/users/{name}/server", token=token)
    assert r.status_code in (202, 204), r.text
    hub.wait_stopped(name, timeout=60)


def test_no_deleting_what_a_running_server_uses(hub):
    name, tok = hub.create_user(unique_name("run"))
    r = call(hub, "POST", "workspaces", tok, json={"name": unique_name("runws")})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    r = call(hub, "POST", f"workspaces/{wid}/projects", tok, json={"name": "busy"})
    assert r.status_code == 201, r.text
    busy = r.json()["id"]
    r = call(hub, "POST", f"workspaces/{wid}/projects", tok, json={"name": "idle"})
    idle = r.json()["id"]

    _start(hub, name, tok, {"workspace_id": wid, "project": "busy"})
    try:
        opts = hub.api("GET", f"/users/{name}").json()["servers"][""]["user_options"]
        assert (opts.get("workspace_id"), opts.get("project_id")) == (wid, busy), opts
        r = call(hub, "DELETE", f"workspaces/{wid}/projects/{busy}", tok)
        assert r.status_code == 409 and "stop it first" in r.json()["message"], r.text
        r = call(hub, "DELETE", f"workspaces/{wid}", tok)
        assert r.status_code == 409 and "running server" in r.json()["message"], r.text
        # another project of the same workspace is free to go
        assert call(hub, "DELETE", f"workspaces/{wid}/projects/{idle}", tok).status_code == 204
        # nothing else changed
        names = [p["name"] for p in call(hub, "GET", f"workspaces/{wid}/projects", tok).json()["items"]]
        assert "busy" in names
    finally:
        _stop(hub, name, tok)
    deadline = time.monotonic() + 10
    while True:  # the hub may report the server for a moment after it stopped
        r = call(hub, "DELETE", f"workspaces/{wid}", tok)
        if r.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 204, r.text
    assert call(hub, "GET", f"workspaces/{wid}", tok).status_code == 404
