"""The ledger inside the quota service (real handlers, SQLite, migrations; only the hub is
faked): invariants under random admissions and releases, maintenance marks, stop hooks
and who may release, notebooks preempted only when configured."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from test_quota_support import QuotaUnderTest

from gemhub.services.quota import ledger_views, quotas
from gemhub.services.quota.asks import parse_ask
from gemhub.services.quota.ledger import Ledger, LedgerCache
from gemhub.services.quota.models import Admission, Membership, Project, Workspace
from gemhub.spawner.accelerators import Allocation

PLATFORM = {
    "presets": [{"name": "B1", "cpu": 1, "memory": "1G"}],
    "accelerators": {"inventory": "simulated", "simulated": [{"node": "n1", "model": "A100-80G", "count": 2},
                                                             {"node": "n2", "model": "RTX4090", "count": 1}]},
    "priority_levels": {"low": 0, "normal": 100, "high": 200}, "max_priority": 200,
    "preemptible_kinds": ["job"],
}
SPECS = ["0", "1(A100-80G)", "0.5(A100-80G)", "0.25(A100-80G)", "2(A100-80G)", "1(RTX4090)", "1(mig-1g.10gb)"]


def check_invariants(service) -> None:
    """No device given beyond its capacity; no workspace beyond its nominal quota plus what
    it borrowed; the writer's cached books equal books read fresh from the database."""
    config = service.ledger_config
    devices = {d.id: d for d in config.devices()}
    with service.ledger.sessionmaker() as s:
        admitted = list(s.scalars(select(Admission).where(Admission.state == "admitted")))
        whole: set[str] = set()
        shared: dict[str, list[Allocation]] = {}
        for a in admitted:
            if not a.placement:
                continue
            p = Allocation.from_json(a.placement)
            for dev in p.device_ids:
                if p.exclusive:
                    assert dev not in whole and dev not in shared, f"{dev} given twice"
                    whole.add(dev)
                else:
                    assert dev not in whole
                    shared.setdefault(dev, []).append(p)
        for dev, ps in shared.items():
            if ps[0].mig_profile:
                continue
            assert sum(p.memory_mib for p in ps) <= devices[dev].memory_mib
            assert sum(p.compute_percent for p in ps) <= 100
        fresh = Ledger(s, config, LedgerCache())
        fresh.lock()
        if service.ledger.cache.queued is not None and service.ledger.cache.version is not None:
            assert service.ledger.cache.queued == fresh.queued_count()
        for ws_id in {a.workspace_id for a in admitted} | set(service.ledger.cache.books):
            b = fresh.book(ws_id)
            mine = quotas.add(b.used, b.borrowed, -1)
            for key, limit in b.nominal.items():
                assert mine.get(key, Decimal(0)) <= limit, (ws_id, key)
            cached = service.ledger.cache.books.get(ws_id)
            if cached is not None and service.ledger.cache.version is not None:
                strip = lambda d: {k: v for k, v in d.items() if v}  # noqa: E731
                assert strip(cached.used) == strip(b.used) and strip(cached.borrowed) == strip(b.borrowed)
        s.rollback()


@pytest.fixture
def service(tmp_path):
    from gemhub.services.quota.app import QuotaService

    svc = QuotaService(state_dir=str(tmp_path), db_url=f"sqlite:///{tmp_path}/q.sqlite", platform=PLATFORM)
    svc.init_db()
    with svc.sessionmaker() as s:
        ids = []
        for name, cohort in (("a", "lab"), ("b", "lab"), ("c", None)):
            ws = Workspace(name=name, cohort=cohort)
            s.add(ws)
            s.flush()
            s.add(Membership(workspace_id=ws.id, username="u", role="owner"))
            p = Project(workspace_id=ws.id, name="default")
            s.add(p)
            s.flush()
            ids.append((ws.id, p.id))
        s.commit()
    svc.spaces = ids
    reg = svc.ledger_config.registry
    for (ws, _), limits in zip(ids, ({"accelerators": {"A100-80G": 1}, "jobs": 3},
                                     {"accelerators": {"A100-80G": "1.5"}, "cpu": 4}, {})):
        svc.ledger.run_sync(lambda L, w=ws, lim=limits: L.set_quota(w, quotas.parse_limits(lim, reg)))
    yield svc
    svc.ledger.close()


op = st.one_of(
    st.tuples(st.just("admit"), st.integers(0, 2), st.sampled_from(SPECS), st.sampled_from(["job", "notebook"]),
              st.sampled_from([0, 100, 200])),
    st.tuples(st.just("release"), st.integers(0, 40), st.just(""), st.just(""), st.just(0)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=4, max_size=18))
def test_random_admissions_and_releases_keep_the_ledger_sound(service, ops):
    config = service.ledger_config
    made: list[int] = []
    run = uuid.uuid4().hex  # the database outlives one example
    for i, (kind, n, spec, what, priority) in enumerate(ops):
        if kind == "admit":
            ws, project = service.spaces[n]
            body = {"workspace_id": ws, "project_id": project, "spec": spec, "cpu": 1, "memory": "1G",
                    "kind": what, "priority": priority, "idempotency_key": f"{run}-{i}",
                    "holder": f"{what}:{run}-{i}"}

            def admit(L, b=body):
                return L.admit(parse_ask(b, config.catalog, config.registry, config.priority_levels), "u").id

            try:
                made.append(service.ledger.run_sync(admit)[0])
            except Exception as e:  # a request that could never fit is refused, never queued
                assert getattr(e, "status", None) == 400, e
        elif made:
            ident = made[n % len(made)]
            service.ledger.run_sync(lambda L, x=ident: L.release(x, "test"))
        check_invariants(service)


# -- over HTTP ------------------------------------------------------------------------------------
@pytest.fixture
async def q(tmp_path):
    async with QuotaUnderTest(tmp_path, platform={**PLATFORM, "preemptible_kinds": ["job", "notebook"]}) as svc:
        svc.hub.admins.add("root")
        svc.root = svc.user("root")
        svc.alice = svc.user("alice")
        ws = (await svc.call("GET", "api/v1/workspaces", svc.alice, params={"include_projects": "1"})).json()
        svc.ws = ws["items"][0]
        yield svc


async def admit(q, key: str, spec: str = "1(RTX4090)", **kw) -> dict:
    r = await q.call("POST", "api/v1/admissions", "service-token", params={"user": "alice"}, json={
        "workspace_id": q.ws["id"], "project_id": q.ws["projects"][0]["id"], "spec": spec, "cpu": 1,
        "memory": "1G", "idempotency_key": key, "holder": kw.pop("holder", f"job:{key}"), "kind": "job", **kw})
    assert r.status_code in (200, 201), r.text
    return r.json()


async def test_maintenance_marks_live_in_the_ledger_and_a_device_back_admits_the_waiting(q):
    r = await q.call("POST", "api/v1/devices", q.root, json={"device": "n2/0", "maintenance": True})
    assert r.status_code == 200, r.text
    node = next(n for n in r.json()["nodes"] if n["name"] == "n2")
    assert node["devices"][0]["status"] == "maintenance" and node["devices"][0]["maintenance"]
    waiting = await admit(q, "m1")
    assert waiting["state"] == "queued" and waiting["message"] == "waiting for a free RTX4090: 1st of 1"
    for bad, status in (({"device": "n2/9", "maintenance": True}, 404), ({"device": "n2/0"}, 400),
                        ({"device": "n2/0", "node": "n2", "maintenance": True}, 400)):
        assert (await q.call("POST", "api/v1/devices", q.root, json=bad)).status_code == status
    assert (await q.call("POST", "api/v1/devices", q.alice, json={"node": "n2", "maintenance": True})).status_code == 403
    r = await q.call("POST", "api/v1/devices", q.root, json={"device": "n2/0", "maintenance": False})
    held = next(n for n in r.json()["nodes"] if n["name"] == "n2")["devices"][0]["holders"]
    assert [h["admission"] for h in held] == [waiting["id"]]


async def test_stop_hooks_are_registered_by_services_and_only_their_owner_releases(q):
    q.tokens["jobs-token"] = {"kind": "service", "name": "jobs", "scopes": ["access:services!service=quota"]}
    q.tokens["other-token"] = {"kind": "service", "name": "billing", "scopes": ["access:services!service=quota"]}
    for body, needle in (({"url": "ftp://x/", "token": "t" * 20}, "http(s) URL"),
                         ({"url": "http://u:p@x/", "token": "t" * 20}, "without credentials"),
                         ({"url": "http://x/", "token": "short"}, "16 to 1024"),
                         ({"url": "http://x/"}, "token must be")):
        r = await q.call("PUT", "api/v1/hooks/job", "jobs-token", json=body)
        assert r.status_code == 400 and needle in r.json()["message"], r.text
    assert (await q.call("PUT", "api/v1/hooks/vm", "jobs-token",
                         json={"url": "http://x/", "token": "t" * 20})).status_code == 400
    assert (await q.call("PUT", "api/v1/hooks/job", q.alice,
                         json={"url": "http://x/", "token": "t" * 20})).status_code == 403
    r = await q.call("PUT", "api/v1/hooks/job", "jobs-token", json={"url": "http://127.0.0.1:9/hook", "token": "s" * 20})
    assert r.status_code == 200 and r.json()["registered_by"] == "service:jobs"
    assert (await q.call("PUT", "api/v1/hooks/job", "other-token",
                         json={"url": "http://x/", "token": "t" * 20})).status_code == 403
    entry = await admit(q, "h1")
    assert (await q.call("DELETE", f"api/v1/admissions/{entry['id']}", "other-token")).status_code == 403
    assert (await q.call("DELETE", f"api/v1/admissions/{entry['id']}", q.alice)).status_code == 403
    r = await q.call("DELETE", f"api/v1/admissions/{entry['id']}", "jobs-token", json={"reason": "done"})
    assert r.status_code == 200 and r.json()["state"] == "released" and r.json()["end_reason"] == "done"
    # idempotent
    assert (await q.call("DELETE", f"api/v1/admissions/{entry['id']}", "jobs-token")).json()["state"] == "released"
    listing = (await q.call("GET", "api/v1/hooks", q.root)).json()["items"]
    assert listing == [{"kind": "job", "url": "http://127.0.0.1:9", "registered_by": "service:jobs",
                        "updated": listing[0]["updated"]}]


async def test_notebooks_are_preempted_through_the_hub_only_when_configured(q):
    stopped: list[tuple[str, str]] = []

    async def stop_server(user, server=""):
        stopped.append((user, server))
        return True, "stopping"

    q.hub.stop_server = stop_server
    low = await admit(q, "n1", kind="notebook", priority="low", holder="server:alice/")
    high = await admit(q, "n2", priority="high")
    assert high["state"] == "queued" and "preempted" in high["reason"]
    for _ in range(50):
        if stopped:
            break
        await asyncio.sleep(0.05)
    assert stopped == [("alice", "")]
    entry = (await q.call("GET", f"api/v1/admissions/{low['id']}", q.alice)).json()
    assert entry["preempted_by"] == high["id"] and entry["message"].startswith("preempted by admission")
    # the hub stops the server, the spawner releases its entry: the waiting job runs
    await q.call("DELETE", f"api/v1/admissions/{low['id']}", "service-token", params={"user": "alice"})
    assert (await q.call("GET", f"api/v1/admissions/{high['id']}", q.alice)).json()["state"] == "admitted"
    events = (await q.call("GET", f"api/v1/admissions/{low['id']}/events", q.alice)).json()["items"]
    assert "preempt-sent" in [e["event"] for e in events]


async def test_leaving_the_queue_and_the_history(q):
    first = await admit(q, "c1")
    waiting = await admit(q, "c2")
    assert waiting["state"] == "queued"
    r = await q.call("DELETE", f"api/v1/admissions/{waiting['id']}", "service-token", params={"user": "alice"},
                     json={"reason": "the spawn was cancelled"})
    assert r.json()["state"] == "cancelled" and r.json()["end_reason"] == "the spawn was cancelled"
    listing = (await q.call("GET", "api/v1/admissions", q.alice, params={"state": "all"})).json()
    assert [e["state"] for e in listing["items"]] == ["admitted", "cancelled"]
    assert (await q.call("GET", "api/v1/admissions", q.user("mallory"))).json()["items"] == []
    assert (await q.call("GET", f"api/v1/admissions/{first['id']}", q.user("mallory"))).status_code == 404
    events = (await q.call("GET", f"api/v1/admissions/{waiting['id']}/events", q.alice)).json()["items"]
    assert [e["event"] for e in events] == ["requested", "queued", "cancelled"]


async def test_queued_entries_of_a_deleted_workspace_leave_the_queue(q):
    team = (await q.call("POST", "api/v1/workspaces", q.alice, json={"name": "gone"})).json()
    project = (await q.call("GET", f"api/v1/workspaces/{team['id']}/projects", q.alice)).json()["items"][0]
    holder = await admit(q, "d1")
    q.ws = {**team, "projects": [project]}
    waiting = await admit(q, "d2")
    assert waiting["state"] == "queued"
    assert (await q.call("DELETE", f"api/v1/workspaces/{team['id']}", q.alice)).status_code == 204
    await q.call("DELETE", f"api/v1/admissions/{holder['id']}", "service-token", params={"user": "alice"})
    entry = (await q.call("GET", f"api/v1/admissions/{waiting['id']}", "service-token",
                          params={"user": "alice"})).json()
    assert entry["state"] == "cancelled" and entry["end_reason"] == "its workspace was deleted"


def test_maintenance_marks_of_the_hub_are_imported_once(tmp_path):
    import json

    from gemhub.services.quota.app import QuotaService

    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "maintenance.json").write_text(json.dumps({"devices": ["n1/1"], "nodes": ["n2"]}))
    svc = QuotaService(state_dir=str(tmp_path), db_url=f"sqlite:///{tmp_path}/q.sqlite", platform=PLATFORM)
    svc.init_db()
    try:
        view, _ = svc.ledger.run_sync(lambda L: ledger_views.devices_view(L.s, L.config))
        status = {d["id"]: d["status"] for n in view["nodes"] for d in n["devices"]}
        assert status == {"n1/0": "online", "n1/1": "maintenance", "n2/0": "maintenance"}
        assert not (tmp_path / "devices" / "maintenance.json").exists()
        assert (tmp_path / "devices" / "maintenance.json.imported").exists()
    finally:
        svc.ledger.close()


async def test_the_quotas_page_is_for_hub_admins(q):
    r = await q.call("PUT", f"api/v1/workspaces/{q.ws['id']}/quota", q.root,
                     json={"quota": {"cpu": 6, "accelerators": {"RTX4090": 1}}})
    assert r.status_code == 200
    await admit(q, "p1")
    page = await q.call("GET", "quotas", q.root)
    assert page.status_code == 200
    row = page.text.split(f'data-workspace-id="{q.ws["id"]}"')[1].split("</tr>")[0]
    assert "cpu 6" in row and "RTX4090 1" in row and '<td class="running">1</td>' in row
    assert (await q.call("GET", "quotas", q.alice)).status_code == 403
    assert (await q.call("GET", "api/v1/quotas", q.alice)).status_code == 403
    overview = (await q.call("GET", "api/v1/quotas", q.root)).json()["items"]
    mine = next(i for i in overview if i["workspace_id"] == q.ws["id"])
    assert mine["used"]["accelerators"] == {"RTX4090": "1"} and mine["running"] == 1


def test_a_change_that_fails_after_writing_is_rolled_back_alone(service):
    """Changes that arrive together share a transaction; one that fails after it wrote is
    undone and the others commit (one that fails before writing costs nothing)."""
    import threading
    import time

    from gemhub.services.common.errors import BadRequest
    from gemhub.services.quota.models import DeviceMark

    gate = threading.Event()

    def slow(L):
        gate.wait(10)  # the next three queue up behind this one: one batch
        return "first"

    def wrote_then_failed(L):
        L.set_mark("device", "n1/1", True)
        L.s.flush()
        raise BadRequest("refused after writing")

    def refused(L):
        raise BadRequest("refused before writing")

    def fine(L):
        L.set_mark("node", "n2", True)
        return "fine"

    futures = [service.ledger.submit(slow)]
    time.sleep(0.2)
    futures += [service.ledger.submit(f) for f in (wrote_then_failed, refused, fine)]
    gate.set()
    assert futures[0].result(10)[0] == "first" and futures[3].result(10)[0] == "fine"
    for f, message in ((futures[1], "after writing"), (futures[2], "before writing")):
        with pytest.raises(BadRequest, match=message):
            f.result(10)
    with service.ledger.sessionmaker() as s:
        assert {(m.target, m.name) for m in s.scalars(select(DeviceMark))} == {("node", "n2")}
    check_invariants(service)
