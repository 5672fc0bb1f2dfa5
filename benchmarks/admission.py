"""Admission latency: 200 concurrent clients asking the quota service's ledger for
admissions while it holds 10,000 open entries, on SQLite and on PostgreSQL, against a
baseline in the same run.

A real hub is started (tests/hubproc.py: jupyterhub + configurable-http-proxy + the quota
service on SQLite) with a simulated inventory of 64 nodes × 8 A100-80G; for PostgreSQL a
throwaway Debian PostgreSQL on loopback and a second quota service process on it (the
same code, authenticating through the same hub). Each database is seeded with 10,000 open
entries over 100 workspaces (9,744 CPU-only jobs, 256 holding a whole A100). Then 200
concurrent clients (one asyncio aiohttp session, 200 connections, the spawner's own path: the
service's port with the quota service's token) each loop: wait a random think time
(exponential, mean ``--think`` seconds: 200 clients at 10 s offer 20 admissions/s), POST
an admission for ``1(A100-80G)`` (always admitted: 256 devices stay free), DELETE it. The
latency of each POST is recorded. A last phase with no think time (every client sends as
fast as it is answered) measures the saturated throughput.

Baseline: the same 200 clients, same connections, same think times and number of
requests, each a GET of a workspace (``/api/v1/workspaces/<id>``: the same service, auth
and a database read, no ledger transaction). Baseline and admission rounds alternate
(B, A, B, A); the figures are over both rounds.

    .venv/bin/python benchmarks/admission.py            # SQLite and PostgreSQL, 4000 admissions each
    .venv/bin/python benchmarks/admission.py --quick    # SQLite alone, 400 admissions

Last line: {"p50_ms_sqlite": ..., "p99_ms_sqlite": ..., "p99_ms_postgres": ..., ...}
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from sqlalchemy import insert, update

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
               admit: bool, think: float = 0.0, seed: int = 1) -> list[float]:
    """``total`` requests from ``clients`` concurrent clients, each waiting an exponential
    think time (mean ``think`` s) before each request; milliseconds of each POST (admission)
    or GET (baseline)."""
    latencies: list[float] = []
    counter = iter(range(total))
    rng = random.Random(seed)
    headers = {"Authorization": f"token {token}"}
    params = {"user": USER}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=url, headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=300)) as c:
        async def client(n: int) -> None:
            for i in counter:
                if think:
                    await asyncio.sleep(rng.expovariate(1 / think))
                ws, project = spaces[(n + i) % len(spaces)]
                if admit:
                    key = f"b-{uuid.uuid4().hex}"
                    body = {"workspace_id": ws, "project_id": project, "kind": "job", "spec": "1(A100-80G)",
                            "cpu": 1, "memory": "1G", "idempotency_key": key, "holder": f"job:{key}"}
                    t0 = time.perf_counter()
                    async with c.post("admissions", params=params, json=body) as r:
                        entry = await r.json()
                    latencies.append(1000 * (time.perf_counter() - t0))
                    if r.status != 201 or entry.get("state") != "admitted":
                        raise RuntimeError(f"admission failed: {r.status} {entry}")
                    async with c.delete(f"admissions/{entry['id']}", params=params,
                                        json={"reason": "benchmark"}) as d:
                        await d.read()
                    if d.status != 200:
                        raise RuntimeError(f"release failed: {d.status}")
                else:
                    t0 = time.perf_counter()
                    async with c.get(f"workspaces/{ws}", params=params) as r:
                        await r.read()
                    latencies.append(1000 * (time.perf_counter() - t0))
                    if r.status != 200:
                        raise RuntimeError(f"baseline failed: {r.status}")

        await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def measure(name: str, url: str, token: str, spaces, total: int, clients: int, think: float) -> dict:
    asyncio.run(load(url, token, spaces, min(400, total), clients, True))  # warm caches and connections
    base: list[float] = []
    adm: list[float] = []
    rounds = []
    for r in range(2):
        base += asyncio.run(load(url, token, spaces, total // 2, clients, False, think, seed=r))
        t1 = time.perf_counter()
        adm += asyncio.run(load(url, token, spaces, total // 2, clients, True, think, seed=r))
        rounds.append(time.perf_counter() - t1)
    t0 = time.perf_counter()
    saturated = asyncio.run(load(url, token, spaces, total // 2, clients, True))
    busy = time.perf_counter() - t0
    return {"db": name, "admissions": len(adm), "p50_ms": pct(adm, 50), "p99_ms": pct(adm, 99),
            "max_ms": max(adm), "base_p50_ms": pct(base, 50), "base_p99_ms": pct(base, 99),
            "offered_per_s": len(adm) / sum(rounds),
            "round_p99_ms": [pct(adm[i * (total // 2):(i + 1) * (total // 2)], 99) for i in range(2)],
            "saturated_per_s": len(saturated) / busy, "saturated_p50_ms": pct(saturated, 50)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="SQLite alone, fewer admissions (about a minute)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--entries", type=int, default=10_000, help="open ledger entries before measuring")
    ap.add_argument("--admissions", type=int, default=None, help="measured admissions per database")
    ap.add_argument("--think", type=float, default=10.0, help="mean seconds a client waits between requests")
    args = ap.parse_args()
    total = args.admissions or (400 if args.quick else 4000)
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
        results.append(measure("sqlite", url, token, spaces, total, args.clients, args.think))
        if not args.quick:
            pg = Postgres().start()
            db = pg.create_db("bench")
            spaces = seed(db, args.entries)
            extra = QuotaProcess(hub, db, "bench-pg", platform=platform_of(hub)).start(timeout=180)
            results.append(measure("postgresql", f"{extra.url}api/v1/", token, spaces, total, args.clients,
                                   args.think))
    finally:
        if extra is not None:
            extra.stop()
        if pg is not None:
            pg.stop()
        hub.stop()
    print(f"{'db':<11} {'admissions':>10} {'per s':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'base p50':>9} {'base p99':>9} {'p99 by round':>14} {'saturated/s':>12} {'sat. p50 ms':>12}")
    for r in results:
        print(f"{r['db']:<11} {r['admissions']:>10} {r['offered_per_s']:>6.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['max_ms']:>8.1f} {r['base_p50_ms']:>9.1f} {r['base_p99_ms']:>9.1f} "
              f"{', '.join(f'{x:.0f}' for x in r['round_p99_ms']):>14} {r['saturated_per_s']:>12.1f} "
              f"{r['saturated_p50_ms']:>12.0f}")
    by = {r["db"]: r for r in results}
    load_avg = os.getloadavg()[0]
    print(f"{args.clients} concurrent clients (think time {args.think} s), {args.entries} open entries, "
          f"load average {load_avg:.1f} on {os.cpu_count()} cores; baseline: GET of a workspace through the "
          "same service")
    out = {
        "p50_ms_sqlite": round(by["sqlite"]["p50_ms"], 1), "p99_ms_sqlite": round(by["sqlite"]["p99_ms"], 1),
        "p99_ms_postgres": round(by["postgresql"]["p99_ms"], 1) if "postgresql" in by else None,
        "p50_ms_postgres": round(by["postgresql"]["p50_ms"], 1) if "postgresql" in by else None,
        "base_p99_ms_sqlite": round(by["sqlite"]["base_p99_ms"], 1),
        "saturated_per_s_sqlite": round(by["sqlite"]["saturated_per_s"], 1),
        "saturated_per_s_postgres": round(by["postgresql"]["saturated_per_s"], 1) if "postgresql" in by else None,
        "clients": args.clients, "open_entries": args.entries, "quick": args.quick,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
