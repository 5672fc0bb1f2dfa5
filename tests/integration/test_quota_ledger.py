"""The resource ledger over real HTTP with real processes: 200 concurrent admissions against a
quota on SQLite and on PostgreSQL (also split over two quota service processes sharing one
database), priority preemption and cohort borrowing with a real registered stop hook,
reconciliation, and bad input refused with the reason and nothing changed."""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from hubproc import unique_name
from ledgerproc import FakeJobs, QuotaProcess, quota_token

pytestmark = [pytest.mark.integration]

API = "/services/quota/api/v1"


def api(hub, method: str, path: str, token: str, **kw) -> httpx.Response:
    return hub.request(method, f"{API}/{path}", token=token, **kw)


def new_workspace(hub, members: int = 0) -> dict:
    """A fresh workspace (its owner and ``members`` more users): {id, project, owner, members}."""
    owner, token = hub.create_user(unique_name("lq"))
    r = api(hub, "POST", "workspaces", token, json={"name": unique_name("ws")})
    assert r.status_code == 201, r.text
    ws = r.json()
    project = api(hub, "GET", f"workspaces/{ws['id']}/projects", token).json()["items"][0]["id"]
    others = []
    for _ in range(members):
        name, _ = hub.create_user(unique_name("lm"))
        assert api(hub, "POST", f"workspaces/{ws['id']}/members", token, json={"username": name}).status_code == 201
        others.append(name)
    return {"id": ws["id"], "project": project, "owner": owner, "token": token, "members": others}


def set_quota(hub, ws_id: int, body: dict) -> dict:
    r = api(hub, "PUT", f"workspaces/{ws_id}/quota", hub.admin_token, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def ask(ws: dict, key: str, spec: str = "1(A100-80G)", kind: str = "job", priority=None, user=None,
        holder: str | None = None) -> dict:
    body = {"workspace_id": ws["id"], "project_id": ws["project"], "kind": kind, "spec": spec, "cpu": 1,
            "memory": "1G", "idempotency_key": key, "holder": holder or f"{kind}:{key}"}
    if priority is not None:
        body["priority"] = priority
    return body


async def fire(urls: list[str], token: str, user: str, bodies: list[dict]) -> list[httpx.Response]:
    """POST every body at once (client i uses urls[i % len(urls)]); answers in body order."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(timeout=120, limits=limits,
                                 headers={"Authorization": f"token {token}"}) as c:
        return await asyncio.gather(*(c.post(f"{urls[i % len(urls)]}admissions", params={"user": user}, json=b)
                                      for i, b in enumerate(bodies)))


def get(url: str, token: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, headers={"Authorization": f"token {token}"}, timeout=60)


def release(url: str, token: str, ident: int, user: str, reason: str = "test done") -> dict:
    r = httpx.request("DELETE", f"{url}admissions/{ident}", params={"user": user}, json={"reason": reason},
                      headers={"Authorization": f"token {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def race(urls: list[str], token: str, ws: dict, n: int = 200, quota: int = 3, high: int = 10) -> None:
    """n concurrent admissions against a quota of ``quota`` A100-80G; ``high`` of them ask for a
    higher priority. Exactly ``quota`` are admitted on distinct devices, the rest wait in
    priority-then-arrival order, and releasing one admits exactly the next."""
    user = ws["owner"]
    run = uuid.uuid4().hex[:6]
    high_at = set(range(7, 7 + 11 * high, 11))
    bodies = [ask(ws, f"race-{run}-{i}", priority="high" if i in high_at else None) for i in range(n)]
    answers = asyncio.run(fire(urls, token, user, bodies))
    assert all(r.status_code == 201 for r in answers), collections.Counter((r.status_code, r.text[:80]) for r in answers)
    entries = [r.json() for r in answers]
    admitted = [e for e in entries if e["state"] == "admitted"]
    queued = [e for e in entries if e["state"] == "queued"]
    assert len(admitted) == quota and len(queued) == n - quota
    devices = [d for e in admitted for d in e["placement"]["device_ids"]]
    assert len(set(devices)) == quota  # never one device twice
    assert all(e["queue"] == "quota" for e in queued)
    # the line: priority first, then arrival (the order the ledger numbered them)
    now = get(urls[-1], token, "admissions", user=user, workspace_id=ws["id"], state="queued", limit=200).json()
    assert now["_pagination"]["total"] == n - quota
    line = sorted(now["items"], key=lambda e: (-e["priority"], e["id"]))
    assert [e["position"] for e in line] == list(range(1, len(line) + 1))
    assert all(e["queue_length"] == len(line) for e in line)
    # a high one that arrived while a device was free was admitted at once; the rest lead the line
    waiting_high = high - sum(e["priority"] == 200 for e in admitted)
    assert [e["priority"] for e in line] == [200] * waiting_high + [100] * (len(line) - waiting_high)
    assert line[0]["message"] == f"waiting for quota: 1st of {len(line)}"
    # releasing one admits exactly the next in line, on the freed device
    freed = release(urls[-1], token, admitted[0]["id"], user)
    assert freed["state"] == "released"
    nxt = get(urls[0], token, f"admissions/{line[0]['id']}", user=user).json()
    assert nxt["state"] == "admitted" and nxt["placement"]["device_ids"] == admitted[0]["placement"]["device_ids"]
    assert get(urls[0], token, f"admissions/{line[1]['id']}", user=user).json()["position"] == 1
    still = get(urls[0], token, "admissions", user=user, workspace_id=ws["id"], state="admitted", limit=200).json()
    assert still["_pagination"]["total"] == quota
    # the workspace closes shop: quota 0 (the waiting line stays where it is) and the running go
    r = httpx.put(f"{urls[0]}workspaces/{ws['id']}/quota", params={"user": user},
                  json={"quota": {"accelerators": {"A100-80G": 0}}}, headers={"Authorization": f"token {token}"},
                  timeout=60)
    assert r.status_code == 200, r.text
    for e in [*admitted[1:], nxt]:
        release(urls[e["id"] % len(urls)], token, e["id"], user)
    left = get(urls[0], token, "admissions", user=user, workspace_id=ws["id"], state="admitted").json()
    assert left["_pagination"]["total"] == 0
    ended = get(urls[0], token, "admissions", user=user, workspace_id=ws["id"], state="ended", limit=1).json()
    assert ended["_pagination"]["total"] == quota + 1  # the history stays


def test_200_concurrent_admissions_on_sqlite(ledger_hub):
    ws = new_workspace(ledger_hub)
    set_quota(ledger_hub, ws["id"], {"quota": {"accelerators": {"A100-80G": 3}}, "max_priority": "high"})
    race([f"{ledger_hub.url}/services/quota/api/v1/"], quota_token(ledger_hub), ws)


@pytest.fixture(scope="module")
def second(ledger_hub):
    """A second quota service process on the hub's SQLite ledger; while the file
    ``second.pause`` exists its admissions wait inside their transaction."""
    pause = ledger_hub.workdir / "second-admission-pause"
    proc = QuotaProcess(ledger_hub, f"sqlite:///{ledger_hub.state_dir}/db/quota.sqlite", "second",
                        env={"GEMHUB_TEST_ADMISSION_PAUSE": str(pause)}).start()
    proc.pause = pause
    yield proc
    pause.unlink(missing_ok=True)
    proc.stop()


def test_two_quota_processes_on_one_sqlite_database(ledger_hub, second):
    ws = new_workspace(ledger_hub)
    set_quota(ledger_hub, ws["id"], {"quota": {"accelerators": {"A100-80G": 2}}, "max_priority": 200})
    race([f"{ledger_hub.url}/services/quota/api/v1/", f"{second.url}api/v1/"], quota_token(ledger_hub), ws,
         n=60, quota=2, high=3)


def test_200_concurrent_admissions_on_postgresql_with_two_processes(ledger_hub, postgres):
    db = postgres.create_db(f"ledger_{uuid.uuid4().hex[:8]}")
    token = quota_token(ledger_hub)
    first = QuotaProcess(ledger_hub, db, "pg-1").start()
    second = QuotaProcess(ledger_hub, db, "pg-2").start()
    try:
        urls = [f"{first.url}api/v1/", f"{second.url}api/v1/"]
        owner, _ = ledger_hub.create_user(unique_name("pg"))
        r = httpx.post(f"{urls[0]}workspaces", params={"user": owner}, json={"name": unique_name("pgws")},
                       headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code == 201, r.text
        ws_id = r.json()["id"]
        project = get(urls[1], token, f"workspaces/{ws_id}/projects", user=owner).json()["items"][0]["id"]
        r = httpx.put(f"{urls[1]}workspaces/{ws_id}/quota", params={"user": owner},
                      json={"quota": {"accelerators": {"A100-80G": 3}}, "max_priority": 200},
                      headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code == 200, r.text
        race(urls, token, {"id": ws_id, "project": project, "owner": owner})
    finally:
        first.stop()
        second.stop()


def test_a_killed_quota_process_mid_admission_books_nothing_twice(ledger_hub, second):
    """kill -9 inside the admission's transaction: nothing is written; the client's retry with
    the same idempotency key is admitted once; a second retry gets the same entry."""
    ws = new_workspace(ledger_hub)
    token = quota_token(ledger_hub)
    proc, pause = second, second.pause
    reached = pause.with_name(pause.name + ".reached")
    reached.unlink(missing_ok=True)
    body = ask(ws, f"crash-{uuid.uuid4().hex[:6]}", spec="1(RTX4090)")
    pause.touch()
    try:
        async def first_try():
            async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"token {token}"}) as c:
                task = asyncio.ensure_future(c.post(f"{proc.url}api/v1/admissions", params={"user": ws["owner"]},
                                                    json=body))
                deadline = time.monotonic() + 30
                while not reached.exists():
                    assert time.monotonic() < deadline, proc.log_tail()
                    await asyncio.sleep(0.05)
                proc.kill9()
                with pytest.raises(httpx.HTTPError):
                    await task

        asyncio.run(first_try())
        pause.unlink()
        url = f"{ledger_hub.url}{API}/"
        seen = get(url, token, "admissions", user=ws["owner"], workspace_id=ws["id"], state="all").json()
        assert seen["_pagination"]["total"] == 0  # the killed transaction left nothing behind
        proc.start()  # the same database, as after a restart
        r = httpx.post(f"{proc.url}api/v1/admissions", params={"user": ws["owner"]}, json=body,
                       headers={"Authorization": f"token {token}"}, timeout=60)
        assert r.status_code == 201 and r.json()["state"] == "admitted", r.text
        again = httpx.post(f"{url}admissions", params={"user": ws["owner"]}, json=body,
                           headers={"Authorization": f"token {token}"}, timeout=60)
        assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
        holders = [h for n in get(url, token, "devices", user="admin").json()["nodes"] for d in n["devices"]
                   if d["id"] == "n2/0" for h in d["holders"]]
        assert [h["admission"] for h in holders] == [r.json()["id"]]
        release(url, token, r.json()["id"], ws["owner"])
    finally:
        pause.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def jobs(ledger_hub):
    """The stand-in jobs service, its stop hook registered with its own service token."""
    j = FakeJobs(ledger_hub, ledger_hub.jobs_token, ledger_hub.workdir).start()
    deadline = time.monotonic() + 30
    while not any(e["event"] == "registered" for e in j.events()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    registered = next(e for e in j.events() if e["event"] == "registered")
    assert registered["status"] == 200, registered
    yield j
    j.stop()


def wait_state(url: str, token: str, ident: int, user: str, state: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        entry = get(url, token, f"admissions/{ident}", user=user).json()
        if entry["state"] == state:
            return entry
        assert time.monotonic() < deadline, entry
        time.sleep(0.1)


def post(url: str, token: str, user: str, body: dict) -> dict:
    r = httpx.post(f"{url}admissions", params={"user": user}, json=body,
                   headers={"Authorization": f"token {token}"}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()


def test_priority_preemption_through_the_registered_hook(ledger_hub, jobs):
    url, token = f"{ledger_hub.url}{API}/", quota_token(ledger_hub)
    ws = new_workspace(ledger_hub)
    set_quota(ledger_hub, ws["id"], {"max_priority": "high"})
    user, run = ws["owner"], uuid.uuid4().hex[:6]
    hooks = api(ledger_hub, "GET", "hooks", ledger_hub.admin_token).json()["items"]
    assert [h["kind"] for h in hooks] == ["job"] and hooks[0]["registered_by"] == "service:jobs-test"
    assert "token" not in hooks[0]
    # a notebook is never preempted: a high-priority job waits for it
    notebook = post(url, token, user, ask(ws, f"nb-{run}", "1(RTX4090)", kind="notebook", priority="low",
                                          holder=f"server:{user}/pre-{run}"))
    assert notebook["state"] == "admitted"
    urgent = post(url, token, user, ask(ws, f"urgent-{run}", "1(RTX4090)", priority="high"))
    assert urgent["state"] == "queued" and urgent["message"] == "waiting for a free RTX4090: 1st of 1"
    time.sleep(1)
    assert not [e for e in jobs.events() if e["event"] == "preempt"]
    release(url, token, notebook["id"], user)
    urgent = wait_state(url, token, urgent["id"], user, "admitted")
    # a low-priority job holds the device; a high-priority one preempts it through the hook
    low = post(url, token, user, ask(ws, f"low-{run}", "1(RTX4090)", priority="low"))
    assert low["state"] == "queued"
    release(url, token, urgent["id"], user)
    low = wait_state(url, token, low["id"], user, "admitted")
    high = post(url, token, user, ask(ws, f"high-{run}", "1(RTX4090)", priority="high"))
    assert high["state"] == "queued" and "preempted" in high["reason"]
    high = wait_state(url, token, high["id"], user, "admitted")
    assert high["placement"]["device_ids"] == ["n2/0"]
    preempts = [e for e in jobs.events() if e["event"] == "preempt"]
    # the reconciler sends a preemption again while the release is slow in coming
    assert {e["admission"]["id"] for e in preempts} == {low["id"]}
    assert f"preempted by admission {high['id']}" in preempts[0]["reason"]
    low = get(url, token, f"admissions/{low['id']}", user=user).json()
    assert low["state"] == "released" and low["end_reason"] == "preempted: the job was stopped"
    assert low["preempted_by"] == high["id"]
    history = [e["event"] for e in get(url, token, f"admissions/{low['id']}/events", user=user).json()["items"]]
    assert history[:3] == ["requested", "queued", "admitted"] and "preempt" in history and "preempt-sent" in history
    release(url, token, high["id"], user)


def audit(hub, action: str, target: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{hub.state_dir}/db/quota.sqlite?mode=ro", uri=True)
    try:
        return db.execute("SELECT actor, detail FROM audit_events WHERE action = ? AND target = ?",
                          (action, target)).fetchall()
    finally:
        db.close()


def test_borrowing_in_a_cohort_and_reclaim_by_the_lender(ledger_hub, jobs):
    url, token = f"{ledger_hub.url}{API}/", quota_token(ledger_hub)
    cohort = unique_name("co")
    a, b = new_workspace(ledger_hub), new_workspace(ledger_hub)
    set_quota(ledger_hub, a["id"], {"quota": {"accelerators": {"A100-80G": 1}}, "cohort": cohort})
    set_quota(ledger_hub, b["id"], {"quota": {"accelerators": {"A100-80G": 2}}, "cohort": cohort})
    run = uuid.uuid4().hex[:6]
    a1 = post(url, token, a["owner"], ask(a, f"a1-{run}"))
    assert a1["state"] == "admitted" and a1["borrowed"] is None
    # B is idle (0 %) and A full (100 %): more than 20 % apart, so A borrows B's idle quota
    a2 = post(url, token, a["owner"], ask(a, f"a2-{run}"))
    assert a2["state"] == "admitted" and a2["borrowed"]["from"] == b["id"]
    assert a2["borrowed"]["amounts"]["accelerator:A100-80G"] == "1"
    assert audit(ledger_hub, "quota.borrow", f"workspace:{a['id']}")
    # a notebook is not reclaimable, so it never borrows
    nb = post(url, token, a["owner"], ask(a, f"a-nb-{run}", kind="notebook", holder=f"server:{a['owner']}/b-{run}"))
    assert nb["state"] == "queued" and nb["queue"] == "quota"
    release(url, token, nb["id"], a["owner"])
    usage = api(ledger_hub, "GET", f"workspaces/{b['id']}/usage", b["token"]).json()
    assert usage["free"]["accelerators"]["A100-80G"] == "2" and usage["running"] == []
    # B uses its own quota: one fits next to what it lent; the second needs the loan back
    b1 = post(url, token, b["owner"], ask(b, f"b1-{run}"))
    assert b1["state"] == "admitted"
    b2 = post(url, token, b["owner"], ask(b, f"b2-{run}"))
    assert b2["state"] == "queued" and "reclaiming" in b2["reason"]
    b2 = wait_state(url, token, b2["id"], b["owner"], "admitted")
    a2 = get(url, token, f"admissions/{a2['id']}", user=a["owner"]).json()
    assert a2["state"] == "released" and a2["preempted_by"] == b2["id"]
    reclaim = [e for e in jobs.events() if e["event"] == "preempt" and e["admission"]["id"] == a2["id"]]
    assert reclaim and "reclaimed by its lender" in reclaim[0]["reason"]
    assert audit(ledger_hub, "quota.reclaim", f"workspace:{a['id']}")
    # B is now fully used (100 %) like A: no gap, nothing idle, so A waits
    a3 = post(url, token, a["owner"], ask(a, f"a3-{run}"))
    assert a3["state"] == "queued" and a3["queue"] == "quota"
    for entry, owner in ((a3, a), (a1, a), (b1, b), (b2, b)):
        release(url, token, entry["id"], owner["owner"])


def test_reconciliation_closes_an_entry_with_no_server(ledger_hub):
    url, token = f"{ledger_hub.url}{API}/", quota_token(ledger_hub)
    ws = new_workspace(ledger_hub)
    ghost = post(url, token, ws["owner"], ask(ws, f"ghost-{uuid.uuid4().hex[:6]}", "1(A100-80G)", kind="notebook",
                                               holder=f"server:{ws['owner']}/never-started"))
    assert ghost["state"] == "admitted"
    ended = wait_state(url, token, ghost["id"], ws["owner"], "released", timeout=60)
    assert ended["end_reason"] == "reconciliation: the hub has no such server running"


BAD_ASKS = [
    ({"workspace_id": 10**9}, 404, "workspace 1000000000 does not exist"),
    ({"workspace_id": 2**70}, 400, "workspace_id must be between"),
    ({"project_id": "²"}, 400, "project_id must be a whole number"),
    ({"preset": "Z9"}, 400, "unknown preset 'Z9'"),
    ({"spec": "1(A100-80G"}, 400, "column"),
    ({"spec": "0.5(MI210)"}, 400, "MI210 devices cannot be shared"),
    ({"spec": "8(A100-80G)"}, 400, "can never run on this platform: 8 × A100-80G do not fit on one node"),
    ({"kind": "batch"}, 400, "kind must be one of notebook, job, inference"),
    ({"priority": "urgent"}, 400, "priority must be a whole number or a level name"),
    ({"priority": 250}, 403, "priority 250 is above the highest"),
    ({"idempotency_key": ""}, 400, "idempotency_key must be non-empty text"),
    ({"holder": None}, 400, "holder is required"),
    ({"cpu": -2}, 400, "cpu must not be negative"),
    ({"memory": "lots"}, 400, "memory must be text like"),
    ({"gpus": 1}, 400, "unknown field(s) 'gpus'"),
]

BAD_QUOTAS = [
    ({"quota": {"cpu": -1}}, "quota cpu must not be negative"),
    ({"quota": {"environments": 1.5}}, "quota environments must be a whole number"),
    ({"quota": {"accelerators": {"MI210": 0.5}}}, "MI210 devices cannot be shared"),
    ({"quota": {"accelerators": {"Z9000": 1}}}, "unknown accelerator model or vendor 'Z9000'"),
    ({"quota": {"memory": "64Q"}}, "memory must be text like"),
    ({"quota": {"gpus": 2}}, "unknown quota key(s) 'gpus'"),
    ({"cohort": "a b"}, "cohort must be null or a name"),
    ({"max_priority": "top"}, "priority must be a whole number or a level name"),
    ({"quota": {"accelerators": {"A100-80G": 1}}, "surprise": 1}, "unknown field(s) 'surprise'"),
]


def test_bad_input_is_refused_with_the_reason_and_changes_nothing(ledger_hub):
    url, token = f"{ledger_hub.url}{API}/", quota_token(ledger_hub)
    ws = new_workspace(ledger_hub, members=0)
    other = new_workspace(ledger_hub)
    set_quota(ledger_hub, ws["id"], {"quota": {"cpu": 4, "accelerators": {"A100-80G": 1}}})
    before = get(url, token, "admissions", user="admin", state="all", limit=1).json()["_pagination"]["total"]
    quota_before = api(ledger_hub, "GET", f"workspaces/{ws['id']}/quota", ledger_hub.admin_token).json()
    for change, status, needle in BAD_ASKS:
        body = {**ask(ws, f"bad-{uuid.uuid4().hex[:6]}"), **change}
        r = httpx.post(f"{url}admissions", params={"user": ws["owner"]}, json=body,
                       headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code == status and needle in r.json()["message"], (change, r.status_code, r.text)
    cases = [
        ({"project_id": other["project"]}, ws["owner"], 404, "does not exist in workspace"),
        ({}, other["owner"], 403, "is not a member of workspace"),
        ({"spec": "2(A100-80G)"}, ws["owner"], 400, "A100-80G quota 1 device"),
        ({"cpu": 8}, ws["owner"], 400, "CPU quota 4 cores"),
    ]
    for change, user, status, needle in cases:
        r = httpx.post(f"{url}admissions", params={"user": user},
                       json={**ask(ws, f"bad-{uuid.uuid4().hex[:6]}"), **change},
                       headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code == status and needle in r.json()["message"], (change, r.text)
    # only GemHub's own callers ask for admissions; a user's own token cannot book resources
    r = api(ledger_hub, "POST", "admissions", ws["token"], json=ask(ws, "mine"))
    assert r.status_code == 403, r.text
    # the same idempotency key with another request is a conflict, not a second booking
    key = f"dup-{uuid.uuid4().hex[:6]}"
    first = post(url, token, ws["owner"], ask(ws, key))
    r = httpx.post(f"{url}admissions", params={"user": ws["owner"]}, json=ask(ws, key, spec="0.5(A100-80G)"),
                   headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 409 and "already used for a different request" in r.json()["message"]
    release(url, token, first["id"], ws["owner"])
    for body, needle in BAD_QUOTAS:
        r = api(ledger_hub, "PUT", f"workspaces/{ws['id']}/quota", ledger_hub.admin_token, json=body)
        assert r.status_code == 400 and needle in r.json()["message"], (body, r.text)
    r = api(ledger_hub, "PUT", f"workspaces/{ws['id']}/quota", ws["token"], json={"quota": {"cpu": 100}})
    assert r.status_code == 403 and "hub administrators" in r.json()["message"]
    r = api(ledger_hub, "PUT", f"workspaces/{ws['id']}/members/{ws['owner']}/quota", ws["token"],
            json={"cpu": 8})
    assert r.status_code == 400 and "above the workspace's 4 cores" in r.json()["message"]
    assert api(ledger_hub, "GET", f"workspaces/{ws['id']}/quota", ledger_hub.admin_token).json() == quota_before
    after = get(url, token, "admissions", user="admin", state="all", limit=1).json()["_pagination"]["total"]
    assert after == before + 1  # the one good admission above, nothing from the refused ones


def gemhub(hub, token: str, *args: str, rc: int = 0) -> str:
    """The `gemhub` console script with ``token``: its stdout (stderr when it must fail)."""
    env = dict(os.environ, GEMHUB_URL=hub.url, GEMHUB_TOKEN=token)
    r = subprocess.run([str(Path(sys.executable).parent / "gemhub"), *args], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == rc, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout if rc == 0 else r.stderr


def test_gemhub_quota_set_and_show(ledger_hub):
    ws = new_workspace(ledger_hub, members=1)
    wid = str(ws["id"])
    out = gemhub(ledger_hub, ledger_hub.admin_token, "quota", "set", wid, "--cpu", "8", "--memory", "32G",
                 "--accelerator", "A100-80G=2", "--accelerator", "RTX4090=0.5", "--max-priority", "high")
    assert "cpu 8" in out and "memory 32G" in out and "'A100-80G': '2'" in out
    member = ws["members"][0]
    out = gemhub(ledger_hub, ws["token"], "quota", "set", wid, "--user", member, "--accelerator", "A100-80G=1")
    assert f"{member} in workspace {wid}" in out
    url, token = f"{ledger_hub.url}{API}/", quota_token(ledger_hub)
    entry = post(url, token, member, ask(ws, f"cli-{uuid.uuid4().hex[:6]}"))
    waiting = post(url, token, member, ask(ws, f"cli-{uuid.uuid4().hex[:6]}"))
    assert entry["state"] == "admitted" and waiting["state"] == "queued" and "personal" in waiting["reason"]
    table = gemhub(ledger_hub, ws["token"], "quota", "show", wid).splitlines()
    assert any(line.split()[:4] == ["A100-80G", "2", "1", "1"] for line in table), table
    assert any(line.split()[:3] == ["CPU", "cores", "8"] for line in table), table
    assert any(str(waiting["id"]) in line and "waiting for quota: 1st of 1" in line for line in table), table
    # the owner is not a hub admin: the workspace's quota is not theirs to raise
    err = gemhub(ledger_hub, ws["token"], "quota", "set", wid, "--cpu", "64", rc=1)
    assert "only hub administrators may set a workspace's quota" in err
    for e in (waiting, entry):
        release(url, token, e["id"], member)


def admin_session(hub) -> httpx.Client:
    """The hub admin logged in with a browser's cookies (for the admin console's forms)."""
    import re

    c = httpx.Client(base_url=hub.url, timeout=60, follow_redirects=False)
    page = c.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    r = c.post("/hub/login", data={"username": "admin", "password": hub.admin_password,
                                   **({"_xsrf": xsrf.group(1)} if xsrf else {})})
    assert r.status_code == 302, r.text
    return c


def test_the_console_quotas_tab(ledger_hub):
    import re

    ws = new_workspace(ledger_hub)
    admin = admin_session(ledger_hub)
    try:
        page = admin.get("/hub/gemhub/admin/quotas", params={"search": str(ws["id"])})
        assert page.status_code == 200, page.text
        assert f'data-workspace-id="{ws["id"]}"' in page.text and 'id="gemhub-priority-form"' in page.text
        detail = admin.get(f"/hub/gemhub/admin/quotas/{ws['id']}")
        assert detail.status_code == 200 and 'id="gemhub-quota-form"' in detail.text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', detail.text).group(1)
        form = {"_xsrf": xsrf, "action": "set-quota", "workspace_id": str(ws["id"]), "cpu": "6", "memory": "24G",
                "environments": "", "jobs": "2", "inference": "", "accelerators": "A100-80G=2, RTX4090=0.5",
                "cohort": "", "borrowing": "", "max_priority": "high"}
        r = admin.post(f"/hub/gemhub/admin/quotas/{ws['id']}", data=form)
        assert r.status_code == 303 and "notice=" in r.headers["location"], r.text
        q = api(ledger_hub, "GET", f"workspaces/{ws['id']}/quota", ledger_hub.admin_token).json()
        assert q["quota"]["cpu"] == "6" and q["quota"]["accelerators"] == {"A100-80G": "2", "RTX4090": "0.5"}
        assert q["max_priority"] == 200 and q["quota"]["jobs"] == 2
        # a wrong value comes back with the service's reason; nothing changes
        r = admin.post(f"/hub/gemhub/admin/quotas/{ws['id']}", data={**form, "accelerators": "MI210=0.5"})
        assert r.status_code == 400 and "MI210 devices cannot be shared" in r.text
        assert api(ledger_hub, "GET", f"workspaces/{ws['id']}/quota", ledger_hub.admin_token).json() == q
        r = admin.post("/hub/gemhub/admin/quotas", data={"_xsrf": xsrf, "action": "set-priority",
                                                         "user": ws["owner"], "priority": "low"})
        assert r.status_code == 303, r.text
        assert f'data-user="{ws["owner"]}"' in admin.get("/hub/gemhub/admin/quotas").text
    finally:
        admin.close()
