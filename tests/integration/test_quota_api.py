"""The quota service as the hub runs it: real hub, proxy and service process, over HTTP."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration

API = "/services/quota/api/v1"


def call(hub, method, path, token=None, **kw) -> httpx.Response:
    return hub.request(method, f"{API}/{path}", token=token, **kw)


def new_user(hub, prefix="q"):
    return hub.create_user(unique_name(prefix))


def personal(hub, token) -> dict:
    r = call(hub, "GET", "workspaces", token, params={"include_projects": "1"})
    assert r.status_code == 200, r.text
    return next(w for w in r.json()["items"] if w["personal"])


def make_workspace(hub, owner_token, *members) -> int:
    """A workspace owned by ``owner_token`` with (username, role) members."""
    r = call(hub, "POST", "workspaces", owner_token, json={"name": unique_name("ws")})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    for username, role in members:
        r = call(hub, "POST", f"workspaces/{wid}/members", owner_token, json={"username": username, "role": role})
        assert r.status_code == 201, r.text
    return wid


def assert_error(r: httpx.Response, status: int, needle: str = "") -> None:
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text}"
    body = r.json()
    assert body["status"] == status and body["message"]
    assert needle.lower() in body["message"].lower(), body["message"]


def test_anonymous_is_401_and_pages_redirect_to_login(hub):
    assert_error(call(hub, "GET", "workspaces"), 401)
    assert_error(call(hub, "POST", "workspaces", json={"name": "x"}), 401)
    r = hub.request("GET", "/services/quota/")
    assert r.status_code == 302 and "oauth2/authorize" in r.headers["location"]
    assert_error(call(hub, "GET", "workspaces", "not-a-token"), 401)


def test_health_openapi_metrics(hub):
    assert hub.request("GET", "/services/quota/health").json()["status"] == "ok"
    doc = hub.request("GET", f"{API}/openapi.json").json()
    assert "/workspaces/{ws_id}/members/{username}" in doc["paths"]
    assert "gemhub_service_requests_total" in hub.request("GET", "/services/quota/metrics").text


def test_personal_workspace_dirs_and_hub_group(hub):
    name, token = new_user(hub)
    ws = personal(hub, token)
    assert ws["name"] == name and ws["role"] == "owner"
    assert [p["name"] for p in ws["projects"]] == ["default"]
    assert personal(hub, token)["id"] == ws["id"]  # made once
    pid = ws["projects"][0]["id"]
    base = hub.state_dir / "workspaces" / str(ws["id"]) / "projects" / str(pid)
    assert (base / "code").is_dir() and (base / "output").is_dir()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = hub.api("GET", f"/groups/ws-{ws['id']}")
        if r.status_code == 200 and r.json()["users"] == [name]:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"hub group ws-{ws['id']} not synced: {r.status_code} {r.text}")


def test_isolation_between_workspaces(hub):
    a_name, a = new_user(hub, "qa")
    b_name, b = new_user(hub, "qb")
    wid = make_workspace(hub, b)
    pid = call(hub, "POST", f"workspaces/{wid}/projects", b, json={"name": "secret"}).json()["id"]
    listing = call(hub, "GET", "workspaces", a).json()["items"]
    assert wid not in [w["id"] for w in listing]
    for method, path, body in (
        ("GET", f"workspaces/{wid}", None),
        ("PATCH", f"workspaces/{wid}", {"name": "stolen"}),
        ("DELETE", f"workspaces/{wid}", None),
        ("GET", f"workspaces/{wid}/members", None),
        ("POST", f"workspaces/{wid}/members", {"username": a_name, "role": "owner"}),
        ("PATCH", f"workspaces/{wid}/members/{b_name}", {"role": "member"}),
        ("DELETE", f"workspaces/{wid}/members/{b_name}", None),
        ("GET", f"workspaces/{wid}/projects", None),
        ("POST", f"workspaces/{wid}/projects", {"name": "mine"}),
        ("GET", f"workspaces/{wid}/projects/{pid}", None),
        ("PATCH", f"workspaces/{wid}/projects/{pid}", {"name": "x"}),
        ("DELETE", f"workspaces/{wid}/projects/{pid}", None),
    ):
        # the same 404 as a workspace that does not exist: ids of others are not revealed
        assert_error(call(hub, method, path, a, json=body), 404, f"workspace {wid} does not exist")
    # a project id of B's workspace through A's own workspace is not found
    own = personal(hub, a)["id"]
    assert_error(call(hub, "GET", f"workspaces/{own}/projects/{pid}", a), 404)
    # A cannot act for B
    assert_error(call(hub, "GET", "workspaces", a, params={"user": b_name}), 403)
    # nothing changed
    assert call(hub, "GET", f"workspaces/{wid}", b).json()["role"] == "owner"
    names = [p["name"] for p in call(hub, "GET", f"workspaces/{wid}/projects", b).json()["items"]]
    assert names == ["default", "secret"]
    assert [m["username"] for m in call(hub, "GET", f"workspaces/{wid}/members", b).json()["items"]] == [b_name]


def test_roles_on_every_endpoint(hub):
    o_name, o = new_user(hub, "qo")
    a_name, a = new_user(hub, "qad")
    m_name, m = new_user(hub, "qm")
    x_name, _ = new_user(hub, "qx")
    wid = make_workspace(hub, o, (a_name, "admin"), (m_name, "member"))
    roles = {w["id"]: w["role"] for w in call(hub, "GET", "workspaces", m).json()["items"]}
    assert roles[wid] == "member"

    # everybody views
    for t in (o, a, m):
        assert call(hub, "GET", f"workspaces/{wid}", t).status_code == 200
        assert call(hub, "GET", f"workspaces/{wid}/members", t).status_code == 200
        assert call(hub, "GET", f"workspaces/{wid}/members/{o_name}", t).status_code == 200
        assert call(hub, "GET", f"workspaces/{wid}/projects", t).status_code == 200

    # member: creates projects, nothing else
    r = call(hub, "POST", f"workspaces/{wid}/projects", m, json={"name": "by-member"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert call(hub, "GET", f"workspaces/{wid}/projects/{pid}", m).status_code == 200
    assert_error(call(hub, "PATCH", f"workspaces/{wid}/projects/{pid}", m, json={"name": "n"}), 403)
    assert_error(call(hub, "DELETE", f"workspaces/{wid}/projects/{pid}", m), 403)
    assert_error(call(hub, "PATCH", f"workspaces/{wid}", m, json={"name": unique_name("r")}), 403)
    assert_error(call(hub, "DELETE", f"workspaces/{wid}", m), 403)
    assert_error(call(hub, "POST", f"workspaces/{wid}/members", m, json={"username": x_name}), 403)
    assert_error(call(hub, "PATCH", f"workspaces/{wid}/members/{a_name}", m, json={"role": "member"}), 403)
    assert_error(call(hub, "DELETE", f"workspaces/{wid}/members/{a_name}", m), 403)

    # admin: rename, projects, members except owners
    new_name = unique_name("ren")
    assert call(hub, "PATCH", f"workspaces/{wid}", a, json={"name": new_name}).json()["name"] == new_name
    assert call(hub, "PATCH", f"workspaces/{wid}/projects/{pid}", a, json={"name": "renamed"}).status_code == 200
    assert call(hub, "POST", f"workspaces/{wid}/members", a, json={"username": x_name}).status_code == 201
    assert call(hub, "PATCH", f"workspaces/{wid}/members/{x_name}", a, json={"role": "admin"}).status_code == 200
    assert_error(call(hub, "PATCH", f"workspaces/{wid}/members/{x_name}", a, json={"role": "owner"}), 403, "owner")
    assert_error(call(hub, "PATCH", f"workspaces/{wid}/members/{o_name}", a, json={"role": "member"}), 403, "owner")
    assert_error(call(hub, "DELETE", f"workspaces/{wid}/members/{o_name}", a), 403, "owner")
    assert call(hub, "DELETE", f"workspaces/{wid}/members/{x_name}", a).status_code == 204
    assert call(hub, "DELETE", f"workspaces/{wid}/projects/{pid}", a).status_code == 204
    assert_error(call(hub, "DELETE", f"workspaces/{wid}", a), 403)

    # owner: owners and deletion; the last owner stays
    assert_error(call(hub, "DELETE", f"workspaces/{wid}/members/{o_name}", o), 409, "owner")
    assert call(hub, "PATCH", f"workspaces/{wid}/members/{a_name}", o, json={"role": "owner"}).status_code == 200
    assert call(hub, "PATCH", f"workspaces/{wid}/members/{a_name}", o, json={"role": "admin"}).status_code == 200
    # a member leaves on their own
    assert call(hub, "DELETE", f"workspaces/{wid}/members/{m_name}", m).status_code == 204
    assert_error(call(hub, "GET", f"workspaces/{wid}", m), 404)
    assert call(hub, "DELETE", f"workspaces/{wid}", o).status_code == 204
    assert_error(call(hub, "GET", f"workspaces/{wid}", o), 404)


@pytest.mark.parametrize("name,needle", [("", "empty"), ("   ", "empty"), ("x" * 64, "63"), ("a/b", "/")])
def test_bad_names_change_nothing(hub, name, needle):
    _, t = new_user(hub, "qn")
    wid = make_workspace(hub, t)
    before_ws = call(hub, "GET", "workspaces", t).json()
    before_pr = call(hub, "GET", f"workspaces/{wid}/projects", t).json()
    assert_error(call(hub, "POST", "workspaces", t, json={"name": name}), 400, needle)
    assert_error(call(hub, "PATCH", f"workspaces/{wid}", t, json={"name": name}), 400, needle)
    assert_error(call(hub, "POST", f"workspaces/{wid}/projects", t, json={"name": name}), 400, needle)
    pid = before_pr["items"][0]["id"]
    assert_error(call(hub, "PATCH", f"workspaces/{wid}/projects/{pid}", t, json={"name": name}), 400, needle)
    assert call(hub, "GET", "workspaces", t).json() == before_ws
    assert call(hub, "GET", f"workspaces/{wid}/projects", t).json() == before_pr


def test_other_bad_input(hub):
    _, t = new_user(hub, "qi")
    wid = make_workspace(hub, t)
    ok = "x" * 63
    assert call(hub, "POST", f"workspaces/{wid}/projects", t, json={"name": ok}).status_code == 201
    assert_error(call(hub, "POST", f"workspaces/{wid}/projects", t, json={"name": ok}), 409, "already exists")
    assert_error(call(hub, "POST", f"workspaces/{wid}/projects", t, json={"name": f" {ok} "}), 409)
    assert_error(call(hub, "POST", "workspaces", t, content=b"{nope", headers={"Content-Type": "application/json"}),
                 400, "json")
    assert_error(call(hub, "POST", "workspaces", t, json=["a"]), 400, "object")
    assert_error(call(hub, "POST", f"workspaces/{wid}/members", t, json={"username": unique_name("ghost")}),
                 400, "no user")
    assert_error(call(hub, "POST", f"workspaces/{wid}/members", t, json={"username": "admin", "role": "boss"}),
                 400, "role")
    assert_error(call(hub, "GET", "workspaces/987654321", t), 404, "does not exist")
    assert_error(call(hub, "POST", "workspaces/987654321/projects", t, json={"name": "p"}), 404)
    assert_error(call(hub, "GET", "workspaces", t, params={"offset": "-1"}), 400)
    taken = personal(hub, t)["name"]
    assert_error(call(hub, "POST", "workspaces", t, json={"name": taken}), 409, "already exists")
    assert_error(call(hub, "DELETE", f"workspaces/{personal(hub, t)['id']}", t), 409, "personal")
    names = [p["name"] for p in call(hub, "GET", f"workspaces/{wid}/projects", t).json()["items"]]
    assert names == ["default", ok]


def test_resolve_for_the_spawner(hub):
    name, t = new_user(hub, "qr")
    service_token = (hub.state_dir / "secrets" / "quota-service.token").read_text().strip()
    r = call(hub, "GET", "resolve", service_token, params={"user": name})
    assert r.status_code == 200, r.text
    assert r.json()["workspace"]["name"] == name and r.json()["project"]["name"] == "default"
    wid = make_workspace(hub, t)
    wname = call(hub, "GET", f"workspaces/{wid}", t).json()["name"]
    pid = call(hub, "POST", f"workspaces/{wid}/projects", t, json={"name": "exp"}).json()["id"]
    r = call(hub, "GET", "resolve", service_token, params={"user": name, "workspace": wname, "project": "exp"})
    assert r.json() == {"workspace": {"id": wid, "name": wname, "personal": False,
                                      "allowed_presets": None, "custom_spec": False,
                                      "max_runtime_minutes": None},
                        "project": {"id": pid, "name": "exp"}}
    r = call(hub, "GET", "resolve", service_token, params={"user": name, "workspace_id": wid, "project_id": pid})
    assert r.json()["project"]["id"] == pid
    # ids are ids and names are names: an id in the name field is looked up as a name
    assert_error(call(hub, "GET", "resolve", service_token, params={"user": name, "workspace": str(wid)}), 404)
    other, _ = new_user(hub, "qr")
    # names only among the user's own workspaces; another's by id is refused
    assert_error(call(hub, "GET", "resolve", service_token, params={"user": other, "workspace": wname}), 404)
    # not a member: the same 404 as for a workspace id that does not exist
    missing = call(hub, "GET", "resolve", service_token, params={"user": other, "workspace_id": 2**62})
    assert_error(missing, 404)
    assert_error(call(hub, "GET", "resolve", service_token, params={"user": other, "workspace_id": wid}), 404,
                 missing.json()["message"].replace(str(2**62), str(wid)))
    assert_error(call(hub, "GET", "resolve", service_token, params={"user": name, "workspace": "no-such-ws"}), 404)
    assert_error(call(hub, "GET", "resolve", service_token), 400, "user")
    # a user's own token cannot resolve for somebody else
    assert_error(call(hub, "GET", "resolve", t, params={"user": other}), 403)


def test_browser_session_with_xsrf(hub):
    """A logged-in browser (HubOAuth cookie) uses the pages and the API the way their JS does."""
    name = unique_name("qw")
    password = "Gem-pass-4821"
    with httpx.Client(base_url=hub.url, timeout=30, follow_redirects=True) as b:
        page = b.get("/hub/signup")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        b.post("/hub/signup", data={"username": name, "signup_password": password,
                                    "signup_password_confirmation": password, "_xsrf": xsrf})
        page = b.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        b.post("/hub/login", data={"username": name, "password": password, "_xsrf": xsrf})
        r = b.get("/services/quota/")  # OAuth round trip, no confirmation page
        assert r.status_code == 200 and 'id="create-workspace"' in r.text, r.text[-1500:]
        token = re.search(r"const XSRF = \"([^\"]+)\"", r.text).group(1)
        cors = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
        wsname = unique_name("bw")
        # without the xsrf header the cookie is not accepted for a state change
        r = b.post(f"{API}/workspaces", json={"name": wsname}, headers=cors)
        assert r.status_code in (401, 403)
        r = b.post(f"{API}/workspaces", json={"name": wsname}, headers={**cors, "X-XSRFToken": token})
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        r = b.post(f"{API}/workspaces/{wid}/projects", json={"name": ""}, headers={**cors, "X-XSRFToken": token})
        assert_error(r, 400, "empty")
        page = b.get(f"/services/quota/workspaces/{wid}")
        assert page.status_code == 200 and 'id="projects"' in page.text and wsname in page.text
