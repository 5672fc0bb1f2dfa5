"""Hand-written hostile requests against the quota, data and ssh services and the spawn
API, through the real hub and proxy (issue 10's findings, one test each): every one of
them answered 500 (or 503, or a 5 MB echo) before the services parsed client numbers in
one place."""

from __future__ import annotations

import hashlib

import jsonschema
import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration

Q, D, S = "/services/quota/api/v1", "/services/data/api/v1", "/services/ssh/api/v1"
BIG = str(2**63)        # one past SQLite's and PostgreSQL's largest integer
HUGE = str(2**64 + 7)
SUPERSCRIPT_TWO = "²"   # "²".isdigit() is True, int("²") raises


def message_of(r) -> str:
    body = r.json()
    assert body["status"] == r.status_code and body["message"], r.text
    return body["message"]


def expect(r, status: int, needle: str = "") -> str:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}"
    text = message_of(r)
    assert needle.lower() in text.lower(), text
    return text


@pytest.fixture(scope="module")
def alice(hub):
    return hub.create_user(unique_name("hx"))


@pytest.fixture(scope="module")
def alice_ws(hub, alice):
    r = hub.request("POST", f"{Q}/workspaces", alice[1], json={"name": unique_name("hxws")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def alice_dataset(hub, alice):
    r = hub.request("POST", f"{D}/assets", alice[1], json={"kind": "dataset", "name": unique_name("hxds")})
    assert r.status_code == 201, r.text
    asset = r.json()
    assert hub.request("POST", f"{D}/assets/{asset['id']}/versions", alice[1], json={}).status_code == 201
    return asset


def test_ids_past_64_bits_are_400_in_every_service(hub, alice, alice_ws, alice_dataset):
    t = alice[1]
    a = alice_dataset["id"]
    for method, path, kw in (
        ("GET", f"{Q}/workspaces/{BIG}", {}),
        ("PATCH", f"{Q}/workspaces/{BIG}", {"json": {"name": "x"}}),
        ("GET", f"{Q}/workspaces/{alice_ws}/projects/{HUGE}", {}),
        ("GET", f"{Q}/workspaces?offset={BIG}", {}),
        ("GET", f"{D}/assets/{BIG}", {}),
        ("GET", f"{D}/assets/{a}/versions/{HUGE}", {}),
        ("POST", f"{D}/assets/{a}/versions/{BIG}/publish", {}),
        ("POST", f"{D}/mounts/resolve", {"json": {"datasets": [{"id": 2**63, "version": 1}]}}),
        ("POST", f"{D}/mounts/resolve", {"json": {"datasets": [{"id": a, "version": 2**64}]}}),
        ("GET", f"{D}/assets?offset={BIG}", {}),
        ("DELETE", f"{S}/keys/{BIG}", {}),
    ):
        expect(hub.request(method, path, t, **kw), 400, "between")
    # as a hub admin, storage samples of any workspace id
    expect(hub.request("GET", f"{D}/storage/samples?workspace={HUGE}", hub.admin_token), 400, "between")
    # the runtime limit (hub admin) and the body of a workspace rename stay 400s too
    expect(hub.request("PATCH", f"{Q}/workspaces/{alice_ws}", hub.admin_token,
                       json={"max_runtime_minutes": 2**64}), 400)


def test_unicode_digits_are_not_numbers(hub, alice, alice_ws):
    t = alice[1]
    # names are names (even made of digits): no workspace/project of that name
    for path in (f"{Q}/resolve?workspace={SUPERSCRIPT_TWO}", f"{Q}/resolve?project={SUPERSCRIPT_TWO}",
                 f"{Q}/resolve?workspace={BIG}"):
        expect(hub.request("GET", path, t), 404)
    # ids are ids: ASCII digits within 64 bits
    for path in (f"{Q}/resolve?workspace_id={SUPERSCRIPT_TWO}", f"{Q}/resolve?workspace_id={BIG}",
                 f"{Q}/resolve?workspace_id={alice_ws}&project_id={HUGE}"):
        expect(hub.request("GET", path, t), 400, "workspace_id" if "project" not in path else "project_id")
    expect(hub.request("GET", f"{D}/storage?workspace={SUPERSCRIPT_TWO}", t), 400, "not a member")
    expect(hub.request("POST", f"{D}/mounts/resolve", t,
                       json={"datasets": [{"id": SUPERSCRIPT_TWO, "version": 1}]}), 400, "0-9")
    expect(hub.request("GET", f"{Q}/workspaces?limit={SUPERSCRIPT_TWO}", t), 400, "0-9")
    expect(hub.request("GET", f"{D}/storage/samples?workspace={SUPERSCRIPT_TWO}", hub.admin_token), 400, "0-9")


def test_upload_offset_must_not_be_negative(hub, alice, alice_dataset):
    t = alice[1]
    data = b"hello world"
    r = hub.request("POST", f"{D}/assets/{alice_dataset['id']}/versions/1/uploads", t,
                    json={"files": [{"path": "neg.txt", "size": len(data),
                                     "sha256": hashlib.sha256(data).hexdigest()}]})
    assert r.status_code == 201, r.text
    uid = r.json()["uploads"][0]["id"]
    assert hub.request("PUT", f"{D}/uploads/{uid}?offset=0", t, content=data[:5]).json()["offset"] == 5
    for bad in ("-1", SUPERSCRIPT_TWO, BIG):
        expect(hub.request("PUT", f"{D}/uploads/{uid}?offset={bad}", t, content=b"XXXXX"), 400, "offset")
    # nothing was overwritten: the rest completes with the right checksum
    assert hub.request("PUT", f"{D}/uploads/{uid}?offset=5", t, content=data[5:]).status_code == 200
    assert hub.request("POST", f"{D}/uploads/{uid}/complete", t).status_code == 200


def test_non_members_get_404_like_a_missing_workspace(hub, alice_ws):
    _, mallory = hub.create_user(unique_name("hxm"))
    missing = expect(hub.request("GET", f"{Q}/workspaces/{2**62}", mallory), 404)
    for method, path, body in (("GET", f"{Q}/workspaces/{alice_ws}", None),
                               ("PATCH", f"{Q}/workspaces/{alice_ws}", {"name": "stolen"}),
                               ("GET", f"{Q}/workspaces/{alice_ws}/members", None),
                               ("POST", f"{Q}/workspaces/{alice_ws}/projects", {"name": "p"}),
                               ("GET", f"{Q}/resolve?workspace_id={alice_ws}", None)):
        text = expect(hub.request(method, path, mallory, json=body), 404)
        assert text == missing.replace(str(2**62), str(alice_ws)), (text, missing)


def test_hub_admin_who_is_not_a_member_matches_the_schema(hub, alice_ws):
    r = hub.request("PATCH", f"{Q}/workspaces/{alice_ws}", hub.admin_token, json={"custom_spec": True})
    assert r.status_code == 200, r.text
    assert r.json()["role"] is None
    doc = hub.request("GET", f"{Q}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    schema = doc["paths"]["/workspaces/{ws_id}"]["patch"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(r.json(), {**schema, "components": doc["components"]})


def test_huge_values_are_not_echoed_and_bodies_are_capped(hub, alice):
    name, t = alice
    five_mb = "x" * (5 * 2**20)
    r = hub.request("POST", f"/hub/api/users/{name}/server", t, json={"workspace": five_mb})
    assert r.status_code == 400, r.text[:300]
    assert len(r.text) < 2000 and "too large" in r.text
    # under the size cap, a long value is quoted cut short
    r = hub.request("POST", f"/hub/api/users/{name}/server", t, json={"workspace": "y" * 60_000})
    assert r.status_code == 400 and len(r.text) < 2000 and "not a valid name" in r.text, r.text[:300]
    r = hub.request("POST", f"/hub/api/users/{name}/server", t, json={"preset": five_mb})
    assert r.status_code == 400 and len(r.text) < 2000, r.text[:300]
    # an id past 64 bits in user_options is the user's mistake (400), not "unavailable" (503)
    r = hub.request("POST", f"/hub/api/users/{name}/server", t, json={"workspace_id": 2**63})
    assert r.status_code == 400, r.text[:300]
    for path in (f"{Q}/workspaces", f"{D}/assets", f"{S}/keys"):
        r = hub.request("POST", path, t, json={"name": five_mb, "public_key": five_mb})
        assert r.status_code in (400, 413), r.text[:300]
        assert len(r.text) < 2000
    expect(hub.request("POST", f"{Q}/workspaces", t, content=b"{" + b" " * (2 * 2**20) + b"}",
                       headers={"Content-Type": "application/json"}), 413, "too large")
