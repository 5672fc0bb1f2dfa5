"""Admission latency: 200 concurrent clients asking the quota service's ledger for
admissions while it holds 10,000 open entries, on SQLite and on PostgreSQL, against a
baseline in the same run.

A real hub is started (tests/hubproc.py: jupyterhub + configurable-http-proxy + the quota
service on SQLite) with a simulated inventory of 64 nodes × 8 A100-80G; for PostgreSQL a
throwaway Debian PostgreSQL on loopback and a second quota service process on it (the
same code, authenticating through the same hub). Each database is seeded with 10,000 open
entries over 100 workspaces (9,744 CPU-only jobs, 256 holding a whole A100). Then 200
clients (one asyncio httpx client, 200 connections, the spawner's own path: the service's
port with the quota service's token) each loop: POST an admission for ``1(A100-80G)``
(always admitted: 256 devices stay free), DELETE it. The latency of each POST is recorded.

Baseline: the same 200 clients, same connections, same number of requests, each a GET of
a workspace (``/api/v1/workspaces/<id>``: the same service, auth and a database read, no
ledger transaction). Baseline and admission rounds alternate (B, A, B, A); the figures
are over both rounds.

    .venv/bin/python benchmarks/admission.py            # SQLite and PostgreSQL, 4000 admissions each
    .venv/bin/python benchmarks/admission.py --quick    # SQLite alone, 800 admissions (< 60 s after start-up)

Last line: {"p50_ms_sqlite": ..., "p99_ms_sqlite": ..., "p99_ms_postgres": ..., ...}
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, update

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubproc import Hub  # noqa: E402
from ledgerproc import Postgres, QuotaProcess, platform_of, quota_token  # noqa: E402

from gemhub.services.common.db import make_engine, run_migrations  # noqa: E402
from gemhub.services.quota.models import Admission, LedgerClock, Membership, Project, Workspace  # noqa: E402

NODES, PER_NODE = 64, 8
CONFIG = {
    "accelerators": {"inventory": "simulated",
                     "simulated": [{"node": f"n{i:02d}", "model": "A100-80G", "count": PER_NODE}
                                   for i in range(NODES)]},
    "presets": [{"name": "B1", "cpu": 1, "memory": "1G"}],
    "services": {"quota": {"reconcile_seconds": 3600}},
}
USER = "bench"


def seed(url: str, entries: int, workspaces: int = 100, devices: int = 256) -> list[tuple[int, int]]:
    """Workspaces (USER a member of each) and ``entries`` open ledger entries; returns
    [(workspace id, project id)]."""
    engine = make_engine(url)
    run_migrations(engine, REPO / "services" / "quota" / "migrations")
    now = datetime.datetime.now(datetime.timezone.utc)
    spaces = []
    with engine.begin() as c:
        for i in range(workspaces):
            ws_id = c.execute(insert(Workspace).values(name=f"bench-{uuid.uuid4().hex[:10]}", created=now,
                                                       custom_spec=False)).inserted_primary_key[0]
            c.execute(insert(Membership).values(workspace_id=ws_id, username=USER, role="owner", created=now))
            p_id = c.execute(insert(Project).values(workspace_id=ws_id, name="default",
                                                    created=now)).inserted_primary_key[0]
            spaces.append((ws_id, p_id))
        rows = []
        for i in range(entries):
            ws_id, p_id = spaces[i % workspaces]
            gpu = i < devices
            node, index = divmod(i, PER_NODE)
            demand = {"cpu": "1", "memory_mib": "1024", "jobs": "1"}
            placement = None
            if gpu:
                demand.update({"accelerator:A100-80G": "1", "accelerator:A100": "1", "accelerator:nvidia": "1"})
                placement = {"holder": f"job:seed-{i}", "device_ids": [f"n{node:02d}/{index}"], "memory_mib": 81920,
                             "compute_percent": 100, "mig_profile": None, "exclusive": True, "vnpu_template": None}
            rows.append(dict(idempotency_key=f"seed-{uuid.uuid4().hex}", fingerprint="seed", holder=f"job:seed-{i}",
                             kind="job", runtime="local", workspace_id=ws_id, project_id=p_id, username=USER,
                             preset=None, spec="1(A100-80G)" if gpu else "0", demand=demand, priority=100,
                             state="admitted", created=now, admitted_at=now, placement=placement,
                             has_devices=gpu))
        for start in range(0, len(rows), 1000):
            c.execute(insert(Admission), rows[start:start + 1000])
        c.execute(update(LedgerClock).values(version=LedgerClock.version + 1))
    engine.dispose()
    return spaces


async def load(url: str, token: str, spaces: list[tuple[int, int]], total: int, clients: int,
               admit: bool) -> list[float]:
    """``total`` requests from ``clients`` concurrent clients; milliseconds of each POST
    (admission) or GET (baseline)."""
    latencies: list[float] = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits,
                                 headers={"Authorization": f"token {token}"}) as c:
        async def client(n: int) -> None:
            for i in counter:
                ws, project = spaces[(n + i) % len(spaces)]
                if admit:
                    key = f"b-{uuid.uuid4().hex}"
                    body = {"workspace_id": ws, "project_id": project, "kind": "job", "spec": "1(A100-80G)",
                            "cpu": 1, "memory": "1G", "idempotency_key": key, "holder": f"job:{key}"}
                    t0 = time.perf_counter()
                    r = await c.post("admissions", params={"user": USER}, json=body)
                    latencies.append(1000 * (time.perf_counter() - t0))
                    if r.status_code != 201 or r.json()["state"] != "admitted":
                        raise RuntimeError(f"admission failed: {r.status_code} {r.text[:300]}")
                    d = await c.request("DELETE", f"admissions/{r.json()['id']}", params={"user": USER},
                                        json={"reason": "benchmark"})
                    if d.status_code != 200:
                        raise RuntimeError(f"release failed: {d.status_code} {d.text[:300]}")
                else:
                    t0 = time.perf_counter()
                    r = await c.get(f"workspaces/{ws}", params={"user": USER})
                    latencies.append(1000 * (time.perf_counter() - t0))
                    if r.status_code != 200:
                        raise RuntimeError(f"baseline failed: {r.status_code} {r.text[:300]}")

        await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def measure(name: str, url: str, token: str, spaces, total: int, clients: int) -> dict:
    asyncio.run(load(url, token, spaces, min(400, total), clients, True))  # warm caches and connections
    base: list[float] = []
    adm: list[float] = []
    rounds = []
    for r in range(2):
        t0 = time.perf_counter()
        base += asyncio.run(load(url, token, spaces, total // 2, clients, False))
        t1 = time.perf_counter()
        adm += asyncio.run(load(url, token, spaces, total // 2, clients, True))
        rounds.append((t1 - t0, time.perf_counter() - t1))
    out = {"db": name, "admissions": len(adm), "p50_ms": pct(adm, 50), "p99_ms": pct(adm, 99),
           "max_ms": max(adm), "base_p50_ms": pct(base, 50), "base_p99_ms": pct(base, 99),
           "admissions_per_s": len(adm) / sum(a for _, a in rounds),
           "round_p99_ms": [pct(adm[i * (total // 2):(i + 1) * (total // 2)], 99) for i in range(2)]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="SQLite alone, fewer admissions (about a minute)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--entries", type=int, default=10_000, help="open ledger entries before measuring")
    ap.add_argument("--admissions", type=int, default=None, help="measured admissions per database")
    args = ap.parse_args()
    total = args.admissions or (800 if args.quick else 4000)
    work = Path(tempfile.mkdtemp(prefix="gemhub-bench-"))
    work.chmod(0o755)
    hub = Hub(work, CONFIG)
    results = []
    pg = None
    extra = None
    try:
        hub.start(timeout=180)
        token = quota_token(hub)
        ports = json.loads((hub.state_dir / "ports.json").read_text())
        url = f"http://127.0.0.1:{ports['quota']}/services/quota/api/v1/"
        spaces = seed(f"sqlite:///{hub.state_dir}/db/quota.sqlite", args.entries)
        results.append(measure("sqlite", url, token, spaces, total, args.clients))
        if not args.quick:
            pg = Postgres().start()
            db = pg.create_db("bench")
            spaces = seed(db, args.entries)
            extra = QuotaProcess(hub, db, "bench-pg", platform=platform_of(hub)).start(timeout=180)
            results.append(measure("postgresql", f"{extra.url}api/v1/", token, spaces, total, args.clients))
    finally:
        if extra is not None:
            extra.stop()
        if pg is not None:
            pg.stop()
        hub.stop()
    print(f"{'db':<11} {'admissions':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'per s':>7} "
          f"{'base p50':>9} {'base p99':>9}  p99 by round")
    for r in results:
        print(f"{r['db']:<11} {r['admissions']:>10} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
              f"{r['admissions_per_s']:>7.1f} {r['base_p50_ms']:>9.1f} {r['base_p99_ms']:>9.1f}  "
              f"{', '.join(f'{x:.1f}' for x in r['round_p99_ms'])}")
    by = {r["db"]: r for r in results}
    load_avg = os.getloadavg()[0]
    print(f"{args.clients} concurrent clients, {args.entries} open entries, load average {load_avg:.1f} "
          f"on {os.cpu_count()} cores; baseline: GET of a workspace through the same service")
    out = {
        "p50_ms_sqlite": round(by["sqlite"]["p50_ms"], 1), "p99_ms_sqlite": round(by["sqlite"]["p99_ms"], 1),
        "p99_ms_postgres": round(by["postgresql"]["p99_ms"], 1) if "postgresql" in by else None,
        "p50_ms_postgres": round(by["postgresql"]["p50_ms"], 1) if "postgresql" in by else None,
        "base_p99_ms_sqlite": round(by["sqlite"]["base_p99_ms"], 1),
        "per_s_sqlite": round(by["sqlite"]["admissions_per_s"], 1),
        "clients": args.clients, "open_entries": args.entries, "quick": args.quick,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
