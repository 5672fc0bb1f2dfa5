"""API latency: the main read endpoints of the quota, data and ssh services under 50
concurrent clients through the hub's proxy, against the hub's own ``GET /hub/api/user`` in
the same run (seed 000 §16: API < 200 ms).

A real hub is started (tests/hubproc.py: jupyterhub + configurable-http-proxy + the
services), users are made with a workspace, a project, a published dataset and an SSH key
each; then every endpoint, the hub's included, gets the same load (``--clients`` concurrent
clients, ``--requests`` requests, tokens of all users in turn, one keep-alive client) in two
rounds whose order is reversed, so both sides see the same machine. Percentiles are over
both rounds.

    .venv/bin/python benchmarks/api.py            # 2 x 1000 requests an endpoint
    .venv/bin/python benchmarks/api.py --quick    # 2 x 60 (about a minute on an idle machine)

Last line: {"p99_ms_worst": ..., "worst_endpoint": ..., "hub_p99_ms": ..., ...}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubproc import Hub, unique_name  # noqa: E402

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl bench@gemhub"
Q, D, S = "/services/quota/api/v1", "/services/data/api/v1", "/services/ssh/api/v1"


def seed(hub: Hub, users: int) -> list[dict]:
    """Users, each with a workspace, a project, a published dataset (and one key in all)."""
    out = []
    for i in range(users):
        name, token = hub.create_user(unique_name("api"))

        def ok(method, path, status=200, **kw):
            r = hub.request(method, path, token, **kw)
            assert r.status_code == status, r.text
            return r.json() if r.content else None

        ws = ok("POST", f"{Q}/workspaces", 201, json={"name": unique_name("apiws")})
        ok("POST", f"{Q}/workspaces/{ws['id']}/projects", 201, json={"name": "bench"})
        a = ok("POST", f"{D}/assets", 201, json={"name": unique_name("apids"), "workspace": ws["name"]})
        ok("POST", f"{D}/assets/{a['id']}/versions", 201, json={})
        data = b"benchmark\n"
        up = ok("POST", f"{D}/assets/{a['id']}/versions/1/uploads", 201,
                json={"files": [{"path": "f.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]})
        uid = up["uploads"][0]["id"]
        ok("PUT", f"{D}/uploads/{uid}?offset=0", content=data)
        ok("POST", f"{D}/uploads/{uid}/complete")
        ok("POST", f"{D}/assets/{a['id']}/versions/1/publish")
        if i == 0:
            ok("POST", f"{S}/keys", 201, json={"public_key": KEY})
        out.append({"name": name, "token": token, "ws": ws["id"], "asset": a["id"]})
    return out


def endpoints() -> dict[str, callable]:
    """name -> (user -> path): the services' main reads, and the hub's own."""
    return {
        "hub GET /hub/api/user": lambda u: "/hub/api/user",
        "quota GET /workspaces": lambda u: f"{Q}/workspaces?include_projects=1",
        "quota GET /workspaces/{id}": lambda u: f"{Q}/workspaces/{u['ws']}",
        "quota GET /workspaces/{id}/projects": lambda u: f"{Q}/workspaces/{u['ws']}/projects",
        "data GET /assets": lambda u: f"{D}/assets",
        "data GET /assets/{id}": lambda u: f"{D}/assets/{u['asset']}",
        "data GET /storage": lambda u: f"{D}/storage?workspace={u['ws']}",
        "ssh GET /keys": lambda u: f"{S}/keys",
        "ssh GET /status": lambda u: f"{S}/status",
    }


async def load(client: httpx.AsyncClient, users: list[dict], path_of, requests: int, clients: int) -> list[float]:
    """``requests`` GETs by ``clients`` concurrent workers; latencies in ms (errors raise)."""
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker():
        for i in counter:
            u = users[i % len(users)]
            t0 = time.perf_counter()
            r = await client.get(path_of(u), headers={"Authorization": f"token {u['token']}"})
            latencies.append(1000 * (time.perf_counter() - t0))
            if r.status_code != 200:
                raise RuntimeError(f"{path_of(u)}: {r.status_code} {r.text[:200]}")

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def measure(hub: Hub, users: list[dict], requests: int, clients: int) -> dict[str, list[float]]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    results: dict[str, list[float]] = {name: [] for name in endpoints()}
    async with httpx.AsyncClient(base_url=hub.url, timeout=60, limits=limits) as client:
        names = list(endpoints())
        for name in names:  # warm-up: token caches, membership caches, connections
            await load(client, users, endpoints()[name], clients, clients)
        for order in (names, names[::-1]):
            for name in order:
                results[name] += await load(client, users, endpoints()[name], requests, clients)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 requests a round per endpoint")
    parser.add_argument("--requests", type=int, help="requests a round per endpoint (default 1000)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--users", type=int, default=10, help="users whose tokens the clients take turns with")
    args = parser.parse_args()
    requests = args.requests or (60 if args.quick else 1000)
    work = Path(tempfile.mkdtemp(prefix="gemhub-bench-"))
    work.chmod(0o755)
    hub = Hub(work, {"hub": {"log_level": "INFO"}})
    try:
        hub.start()
        users = seed(hub, args.users)
        t0 = time.perf_counter()
        results = asyncio.run(measure(hub, users, requests, args.clients))
        elapsed = time.perf_counter() - t0
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)

    hub_name = "hub GET /hub/api/user"
    rows = []
    print(f"{args.clients} concurrent clients, 2 x {requests} requests an endpoint, {elapsed:.0f} s of load")
    print(f"{'endpoint':40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>7}")
    for name, lat in results.items():
        p50, p99 = pct(lat, 50), pct(lat, 99)
        rate = len(lat) / (sum(lat) / 1000 / args.clients)
        rows.append((name, p50, p99))
        print(f"{name:40} {p50:8.1f} {p99:8.1f} {max(lat):8.1f} {rate:7.0f}")
    services = [r for r in rows if r[0] != hub_name]
    worst = max(services, key=lambda r: r[2])
    hub_p99 = next(r[2] for r in rows if r[0] == hub_name)
    print(json.dumps({
        "p99_ms_worst": round(worst[2], 1), "worst_endpoint": worst[0], "hub_p99_ms": round(hub_p99, 1),
        "hub_p50_ms": round(next(r[1] for r in rows if r[0] == hub_name), 1),
        "p50_ms_median": round(statistics.median(r[1] for r in services), 1),
        "clients": args.clients, "requests_per_endpoint": 2 * requests,
    }))


if __name__ == "__main__":
    main()
