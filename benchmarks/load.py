"""A burst of new users (hubtraf-style): GemHub against stock JupyterHub, default timeouts.

N new users arrive at once; each one, as hubtraf does it: is created (REST, with a token
of their own), starts their default server through the REST API and follows its progress
events until it is ready or has failed, starts a kernel, runs code in it over the kernel's
websocket, and stops the server. A user counts as served when every step succeeded.

Two real hubs run side by side (tests/hubproc.py: jupyterhub + configurable-http-proxy):
GemHub as shipped (LocalGemSpawner, quota/data/ssh services, idle culler; spawner timeouts
at their defaults) and a stock JupyterHub with SimpleLocalProcessSpawner and JupyterHub's
default timeouts. Bursts alternate between them (round 1 GemHub first, round 2 stock
first, ...), with the same client, the same steps and fresh users every burst. It also
samples the resident memory of GemHub's hub and services before and after, per new user.

    .venv/bin/python benchmarks/load.py              # 30 users at once, 2 rounds
    .venv/bin/python benchmarks/load.py --quick      # 3 users, 1 round
    .venv/bin/python benchmarks/load.py --users 10 --rounds 3

The machine's load average is printed with every burst: on a shared machine the figures
move with the neighbours' work; compare the two hubs within one run. The last line is
JSON: ok_gemhub, ok_stock, n (attempts per hub), spawn_p95_s, stock_spawn_p95_s (nearest-
rank p95 over all attempts, a failed spawn counting as slower than any; null when the p95
attempt failed), and more. Unix accounts made for the users are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubproc import Hub, free_port  # noqa: E402
from spawn import cleanup_unix_users, percentile  # noqa: E402

GEMHUB = "gemhub"
STOCK = "stock"
CODE = "print(sum(range(10**6)))"
EXPECTED = "499999500000"
USER_DEADLINE = 600  # client-side bound only: the hubs' own timeouts decide a spawn


class StockHub(Hub):
    """JupyterHub as installed, SimpleLocalProcessSpawner, nothing of GemHub, default timeouts."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.wait_for_quota = False
        root = os.geteuid() == 0
        cfg = self.workdir / "stock_config.py"
        cfg.write_text("\n".join([
            "import os",
            "c.JupyterHub.ip = '127.0.0.1'",
            "c.JupyterHub.port = int(os.environ['GEMHUB_PORT'])",
            f"c.JupyterHub.hub_port = {free_port()}",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'",
            f"c.ConfigurableHTTPProxy.command = [{str(REPO / 'node_modules/.bin/configurable-http-proxy')!r}]",
            f"c.ConfigurableHTTPProxy.pid_file = {str(self.workdir / 'proxy.pid')!r}",
            f"c.JupyterHub.db_url = 'sqlite:///{self.workdir}/jupyterhub.sqlite'",
            f"c.JupyterHub.cookie_secret_file = {str(self.workdir / 'cookie_secret')!r}",
            "c.JupyterHub.spawner_class = 'simple'",
            # as root, jupyterhub-singleuser needs --allow-root
            f"c.SimpleLocalProcessSpawner.args = {['--allow-root'] if root else []!r}",
            f"c.SimpleLocalProcessSpawner.home_dir_template = {str(self.workdir / 'homes' / '{username}')!r}",
            "c.JupyterHub.authenticator_class = 'dummy'  # users come through the REST API",
            "c.Authenticator.allow_all = True",
            "c.JupyterHub.services = [{'name': 'bench', 'api_token': os.environ['GEMHUB_ADMIN_TOKEN']}]",
            "c.JupyterHub.load_roles = [{'name': 'admin', 'services': ['bench']}]",
            "c.JupyterHub.log_level = 'INFO'",
        ]) + "\n")
        self.hub_config = cfg


def gemhub_hub(workdir: Path) -> Hub:
    """GemHub as shipped; only the log level is lowered (the tests' harness logs DEBUG)."""
    h = Hub(workdir, {"hub": {"log_level": "INFO"}})
    return h


# -- one user ------------------------------------------------------------------------------------
async def _progress(c: httpx.AsyncClient, name: str, headers: dict) -> tuple[bool, str]:
    """Follow the spawn's progress events (as the spawn page does) to ready or failed."""
    async with c.stream("GET", f"/hub/api/users/{name}/server/progress", headers=headers,
                        timeout=httpx.Timeout(USER_DEADLINE, connect=60)) as r:
        if r.status_code != 200:
            return False, f"progress answered {r.status_code}"
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("ready"):
                return True, ""
            if event.get("failed"):
                return False, event.get("message", "failed")
    return False, "progress stream ended"


async def _run_code(hub: Hub, name: str, token: str, c: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"token {token}"}
    r = await c.post(f"/user/{name}/api/kernels", headers=headers, json={"name": "python3"})
    if r.status_code != 201:
        raise RuntimeError(f"kernel start answered {r.status_code}: {r.text[:200]}")
    kernel = r.json()["id"]
    url = f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{kernel}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=120, connect_timeout=120))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": name, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": CODE, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    out, status, idle = "", None, False
    try:
        # the reply (shell) may come before the output (iopub): done when the kernel is idle too
        while status is None or not idle:
            raw = await ws.read_message()
            if raw is None:
                raise RuntimeError("the kernel's websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            elif msg["msg_type"] == "execute_reply":
                status = msg["content"]["status"]
            elif msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
    finally:
        ws.close()
    if status != "ok" or EXPECTED not in out:
        raise RuntimeError(f"the code ran with status {status}, printed {out!r}")


async def one_user(hub: Hub, name: str) -> dict:
    rec: dict = {"user": name, "ok": False, "stage": "create", "error": ""}
    admin = {"Authorization": f"token {hub.admin_token}"}
    async with httpx.AsyncClient(base_url=hub.url, timeout=httpx.Timeout(120, connect=60)) as c:
        try:
            t = time.monotonic()
            r = await c.post(f"/hub/api/users/{name}", headers=admin)
            if r.status_code != 201:
                raise RuntimeError(f"create answered {r.status_code}: {r.text[:200]}")
            r = await c.post(f"/hub/api/users/{name}/tokens", headers=admin, json={"note": "load"})
            if r.status_code != 201:
                raise RuntimeError(f"token answered {r.status_code}: {r.text[:200]}")
            token = r.json()["token"]
            user = {"Authorization": f"token {token}"}
            rec["create_s"] = time.monotonic() - t
            rec["stage"] = "spawn"
            t = time.monotonic()
            r = await c.post(f"/hub/api/users/{name}/server", headers=user)
            if r.status_code not in (201, 202):
                raise RuntimeError(f"spawn answered {r.status_code}: {r.text[:200]}")
            ok, why = await _progress(c, name, user)
            if not ok:
                raise RuntimeError(why)
            rec["spawn_s"] = time.monotonic() - t
            rec["stage"] = "kernel"
            t = time.monotonic()
            await _run_code(hub, name, token, c)
            rec["kernel_s"] = time.monotonic() - t
            rec["stage"] = "stop"
            t = time.monotonic()
            r = await c.delete(f"/hub/api/users/{name}/server", headers=user)
            if r.status_code not in (202, 204):
                raise RuntimeError(f"stop answered {r.status_code}: {r.text[:200]}")
            while True:
                model = (await c.get(f"/hub/api/users/{name}", headers=user)).json()
                if "" not in model.get("servers", {}) and not model.get("pending"):
                    break
                await asyncio.sleep(0.5)
            rec["stop_s"] = time.monotonic() - t
            rec["ok"] = True
            rec["stage"] = "done"
        except Exception as e:  # the user's failure is the measurement, not the benchmark's
            rec["error"] = f"{type(e).__name__}: {e}"[:300]
    return rec


async def burst(hub: Hub, names: list[str]) -> list[dict]:
    tasks = [asyncio.wait_for(one_user(hub, n), USER_DEADLINE) for n in names]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r if isinstance(r, dict) else {"user": n, "ok": False, "stage": "?", "error": repr(r)}
            for n, r in zip(names, results)]


# -- figures -------------------------------------------------------------------------------------
def p95_with_failures(recs: list[dict], key: str) -> float | None:
    """Nearest-rank p95 over the attempts of this step (a kernel is attempted once the
    server is up), a failed one counting as slower than any."""
    tried = recs if key == "spawn_s" else [r for r in recs if "spawn_s" in r]
    if not tried:
        return None
    value = percentile([r.get(key, float("inf")) for r in tried], 95)
    return None if value == float("inf") else round(value, 2)


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def memory(hub: Hub) -> dict[str, float]:
    """Resident MiB of the hub process and each of its services."""
    out = {}
    try:
        proc = psutil.Process(hub.proc.pid)
        out["hub"] = proc.memory_info().rss / 2**20
        for child in proc.children():
            cmd = " ".join(child.cmdline())
            for name in ("quota", "data", "ssh"):
                if f"gemhub.services.{name}.app" in cmd:
                    out[name] = child.memory_info().rss / 2**20
            if "gemhub.lab.culling" in cmd:
                out["idle-culler"] = child.memory_info().rss / 2**20
    except psutil.Error:
        pass
    return out


def _say(t0: float, what: str) -> None:
    print(f"[{time.monotonic() - t0:7.1f}s] {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 users, 1 round")
    ap.add_argument("--users", type=int, default=None, help="users arriving at once (default 30)")
    ap.add_argument("--rounds", type=int, default=None, help="bursts per hub, alternating (default 2)")
    ap.add_argument("--hubs", default=f"{GEMHUB},{STOCK}",
                    help="which hubs to run (default both; one alone shows it without the other's load)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (hub logs)")
    args = ap.parse_args(argv)
    kinds = [k for k in (GEMHUB, STOCK) if k in args.hubs.split(",")]
    if not kinds:
        ap.error(f"--hubs names none of {GEMHUB}, {STOCK}")
    n = args.users or (3 if args.quick else 30)
    rounds = args.rounds or (1 if args.quick else 2)

    workdir = Path(tempfile.mkdtemp(prefix="gemhub-load-"))
    workdir.chmod(0o755)
    t0 = time.monotonic()
    makers = {GEMHUB: gemhub_hub, STOCK: StockHub}
    hubs: dict[str, Hub] = {kind: makers[kind](workdir / kind) for kind in kinds}
    made: list[str] = []
    results: dict[str, list[dict]] = {GEMHUB: [], STOCK: []}
    bursts: list[dict] = []
    mem_before = mem_after = {}
    try:
        for h in hubs.values():
            h.start(timeout=180)
        _say(t0, "hubs started")
        mem_before = memory(hubs[GEMHUB]) if GEMHUB in hubs else {}
        for rnd in range(rounds):
            order = kinds if rnd % 2 == 0 else kinds[::-1]
            for kind in order:
                names = [f"ld{uuid.uuid4().hex[:8]}" for _ in range(n)]
                if kind == GEMHUB:
                    made += names
                load_start = os.getloadavg()[0]
                t = time.monotonic()
                recs = asyncio.run(burst(hubs[kind], names))
                bursts.append({"hub": kind, "round": rnd + 1, "records": recs, "wall_s": time.monotonic() - t,
                               "load": (load_start, os.getloadavg()[0])})
                results[kind] += recs
                _say(t0, f"round {rnd + 1} {kind}: {sum(r['ok'] for r in recs)}/{n} served")
        mem_after = memory(hubs[GEMHUB]) if GEMHUB in hubs else {}
    finally:
        for kind, h in hubs.items():
            h.stop()
            if h.log_path.exists():
                shutil.copy(h.log_path, workdir / f"{kind}.log")
        _say(t0, "hubs stopped")
        cleanup_unix_users(made)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"{n} new users at once, {rounds} round(s) per hub, alternating; default timeouts; "
          f"root={os.geteuid() == 0}, cpus={os.cpu_count()}")
    print(f"{'hub':<8}{'round':>6}{'served':>9}{'spawn p50':>11}{'p95':>8}{'kernel p50':>12}{'p95':>8}"
          f"{'wall s':>8}{'load avg':>14}")
    for b in bursts:
        recs = b["records"]
        spawns = [r["spawn_s"] for r in recs if "spawn_s" in r]
        kernels = [r["kernel_s"] for r in recs if "kernel_s" in r]
        p95 = p95_with_failures(recs, "spawn_s")
        k95 = p95_with_failures(recs, "kernel_s")
        print(f"{b['hub']:<8}{b['round']:>6}{sum(r['ok'] for r in recs):>5}/{len(recs):<3}"
              f"{_p50(spawns) or '-':>11}{p95 if p95 is not None else 'fail':>8}"
              f"{_p50(kernels) or '-':>12}{k95 if k95 is not None else 'fail':>8}"
              f"{b['wall_s']:>8.1f}{b['load'][0]:>7.1f}->{b['load'][1]:<5.1f}")
    for kind in kinds:
        errors = sorted({f"{r['stage']}: {r['error']}" for r in results[kind] if not r["ok"]})
        for e in errors[:5]:
            print(f"  {kind} failure: {e}")
    users = len(made) or 1
    growth = {k: round((mem_after.get(k, 0) - mem_before.get(k, 0)) * 1024 / users, 1) for k in mem_after}
    print("GemHub resident memory MiB before -> after, growth KiB per new user: " + ", ".join(
        f"{k} {mem_before.get(k, 0):.0f}->{mem_after[k]:.0f} ({growth[k]:+.0f})" for k in sorted(mem_after)))
    summary = {
        "ok_gemhub": sum(r["ok"] for r in results[GEMHUB]),
        "ok_stock": sum(r["ok"] for r in results[STOCK]),
        "n": max(len(results[GEMHUB]), len(results[STOCK])),
        "users_at_once": n,
        "rounds": rounds,
        "spawn_p95_s": p95_with_failures(results[GEMHUB], "spawn_s"),
        "stock_spawn_p95_s": p95_with_failures(results[STOCK], "spawn_s"),
        "spawn_p50_s": _p50([r["spawn_s"] for r in results[GEMHUB] if "spawn_s" in r]),
        "stock_spawn_p50_s": _p50([r["spawn_s"] for r in results[STOCK] if "spawn_s" in r]),
        "kernel_p95_s": p95_with_failures(results[GEMHUB], "kernel_s"),
        "stock_kernel_p95_s": p95_with_failures(results[STOCK], "kernel_s"),
        "memory_kib_per_user": growth,
        "load_avg": [round(b["load"][0], 1) for b in bursts],
        "wall_s": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
