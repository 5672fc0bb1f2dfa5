"""JupyterLab through GemHub's hub against plain JupyterLab (the same version, from the same
venv, no hub), in headless Chromium, plus the start-click-to-launcher time of a fresh spawn
against a stock JupyterHub with SimpleLocalProcessSpawner.

What is timed: from ``page.goto`` of the Lab URL until a launcher card is visible.

- *cold*: a new browser context (empty cache, no server cookie). GemHub's side carries only
  the hub's login cookies, so the first open goes through the OAuth redirects a user's
  first open goes through; the plain side opens ``/lab?token=...``, as ``jupyter lab``
  prints it.
- *warm*: one browser context per side, kept across loads (cache and cookies populated by
  an unmeasured first load), then the same URL again.
- *spawn*: a fresh user, logged in; GemHub: the spawn form's Start (default preset), the
  stock hub: ``/hub/spawn`` (its "Start My Server" link), until the launcher is visible.

Loads alternate sides (GemHub first on even rounds, plain first on odd ones), cold and warm
interleaved. Median and max are reported; the ratios are GemHub's median over plain's.

    .venv/bin/python benchmarks/lab.py            # 7 cold + 7 warm loads a side, 3 spawns a side
    .venv/bin/python benchmarks/lab.py --quick    # 2 + 2 loads, 1 spawn a side (1-2 minutes)
    .venv/bin/python benchmarks/lab.py --trace t.json   # also every request of one load of each kind

Last line: {"ratio_cold", "ratio_warm", "gemhub_cold_ms", "stock_cold_ms", "spawn_to_launcher_s", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests"), str(REPO / "tests" / "e2e")]

from browser import ARGS, CHROMIUM, signup_and_login  # noqa: E402
from hubproc import VENV_BIN, free_port  # noqa: E402
from spawn import BASELINE, GEMHUB, BenchHub, cleanup_unix_users  # noqa: E402

LAUNCHER = ".jp-LauncherCard"
PASSWORD = "Bench-Lab-2026!"
VIEWPORT = {"width": 1400, "height": 900}


class PlainLab:
    """``jupyter lab`` from this venv with stock settings (own config/data/runtime dirs).

    As root it runs in a cgroup of its own with the limits of GemHub's default preset, beside
    GemHub's servers, under the same parent cgroup: both sides then get the same share of a
    busy machine's CPU (see cgroups.parent_cpu_weight)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.cgroup = None

    def start(self, timeout: float = 90) -> "PlainLab":
        root = self.workdir / "root"
        for d in ("code", "output"):  # the same folders GemHub's /gemini shows
            (root / d).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "GEMHUB"))}
        env.update(JUPYTER_CONFIG_DIR=str(self.workdir / "config"), JUPYTER_DATA_DIR=str(self.workdir / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.workdir / "runtime"), PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
        cmd = [str(VENV_BIN / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        log = open(self.workdir / "lab.log", "ab")
        self.cgroup = _preset_cgroup(f"bench-plain-{uuid.uuid4().hex[:8]}")
        procs = self.cgroup.procs_files if self.cgroup is not None else []
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=(lambda: _join(procs)) if procs else None)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/api/status", params={"token": self.token}, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError("jupyter lab did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.remove()
            self.cgroup = None


def _preset_cgroup(unit: str):
    """A cgroup with the limits of GemHub's default preset (None without cgroups)."""
    from gemhub.hub_config.configurer import DEFAULTS
    from gemhub.spawner.local import cgroups
    from gemhub.spawner.presets import parse_memory

    preset = next(p for p in DEFAULTS["presets"] if p["name"] == DEFAULTS["spawner"]["default_preset"])
    cg = cgroups.plan("auto", unit)
    if cg is None:
        return None
    return cg.create(cgroups.Limits(memory=parse_memory(preset["memory"]), cpu=float(preset["cpu"])))


def _join(procs_files: list[str]) -> None:
    """In the child before exec: move this process into the cgroup."""
    for f in procs_files:
        with open(f, "w") as fh:
            fh.write(str(os.getpid()))


class Wire:
    """What one page fetched over the network (Chrome DevTools Protocol events): not the
    cache hits, with each response's status, encoding and bytes on the wire."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.requests: dict[str, dict] = {}
        self.recording = False
        self.cdp.on("Network.requestWillBeSent", self._sent)
        self.cdp.on("Network.responseReceived", self._received)
        self.cdp.on("Network.responseReceivedExtraInfo", self._wire_status)
        self.cdp.on("Network.loadingFinished", self._finished)

    def _sent(self, e):
        if self.recording:
            self.requests[e["requestId"]] = {"url": e["request"]["url"], "start": e["timestamp"], "status": None,
                                             "bytes": 0, "end": e["timestamp"]}

    def _received(self, e):
        r = self.requests.get(e["requestId"])
        if r is not None:
            resp = e["response"]
            headers = {k.lower(): v for k, v in resp.get("headers", {}).items()}
            r.update(status=resp["status"], encoding=headers.get("content-encoding", ""),
                type=headers.get("content-type", ""), cache_control=headers.get("cache-control", ""))

    def _wire_status(self, e):
        """Only what went over the network has these; the status is the server's own (a
        revalidated cache entry is 304 here and 200 in responseReceived)."""
        if self.recording:  # may come before or after requestWillBeSent
            self.wire_status[e["requestId"]] = e["statusCode"]

    def _finished(self, e):
        r = self.requests.get(e["requestId"])
        if r is not None:
            r.update(bytes=e.get("encodedDataLength", 0), end=e["timestamp"])

    def start(self) -> None:
        self.requests = {}
        self.wire_status: dict[str, int] = {}
        self.recording = True

    def stop(self) -> list[dict]:
        self.recording = False
        return [{**r, "status": self.wire_status[rid]} for rid, r in self.requests.items()
                if r["status"] is not None and rid in self.wire_status]


class ServerCPU:
    """CPU seconds of the processes that answer one side's requests (hub, proxy and
    single-user server; or the plain JupyterLab server): a figure that, unlike wall time,
    other work on a shared machine does not inflate."""

    def __init__(self, pids: dict[str, int]):
        self.procs = {role: psutil.Process(pid) for role, pid in pids.items()}

    def __call__(self) -> dict[str, float]:
        out = {}
        for role, p in self.procs.items():
            try:
                t = p.cpu_times()
                out[role] = t.user + t.system
            except psutil.Error:
                out[role] = 0.0
        return out


def _gemhub_pids(hub: BenchHub, name: str) -> dict[str, int]:
    """The hub, its proxy and the user's single-user server."""
    from gemhub.spawner.local.names import unix_name

    hub_proc = psutil.Process(hub.proc.pid)
    pids = {"hub": hub_proc.pid}
    for p in hub_proc.children():
        if "configurable-http-proxy" in " ".join(p.cmdline()):
            pids["proxy"] = p.pid
    owner = unix_name(name) if os.geteuid() == 0 else None
    for p in psutil.process_iter(["cmdline", "username"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "jupyterhub-singleuser" in cmd and (owner is None or p.info["username"] == owner):
            pids["server"] = p.pid
    return pids


def _load(page, wire: Wire, url: str, cpu: ServerCPU, trace: list | None = None) -> dict:
    """Open ``url`` and wait for the launcher; milliseconds plus what went over the wire."""
    wire.start()
    cpu0 = cpu()
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=180_000)
    page.wait_for_selector(LAUNCHER, state="visible", timeout=180_000)
    ms = (time.perf_counter() - t0) * 1000
    cpu1 = cpu()
    server_ms = {role: (cpu1[role] - cpu0[role]) * 1000 for role in cpu1}
    nav = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return {redirects: n.redirectCount, redirect_ms: n.redirectEnd - n.redirectStart,"
                        " ttfb_ms: n.responseStart}; }")
    fetched = wire.stop()
    out = {"ms": ms, "server_cpu_ms": sum(server_ms.values()), "cpu_by_role": server_ms, **nav, "requests": len(fetched), "not_modified": 0, "ext_not_modified": 0,
           "bytes": sum(r["bytes"] for r in fetched), "js_plain": 0, "js_gzip": 0}
    for r in fetched:
        if r["status"] == 304:
            out["not_modified"] += 1
            out["ext_not_modified"] += "/lab/extensions/" in r["url"]
        if "javascript" in r["type"] and r["status"] == 200 and r["bytes"] > 1024:
            out["js_gzip" if r["encoding"] == "gzip" else "js_plain"] += 1
    if trace is not None and fetched:
        first = min(r["start"] for r in fetched)
        trace += [{"url": r["url"], "status": r["status"], "start_ms": round((r["start"] - first) * 1000, 1),
                   "took_ms": round((r["end"] - r["start"]) * 1000, 1), "bytes": r["bytes"],
                   "encoding": r["encoding"], "cache_control": r["cache_control"]}
                  for r in sorted(fetched, key=lambda r: r["start"])]
    return out


def _hub_cookies(browser, hub_url: str, name: str) -> list[dict]:
    """Log an existing user in; the hub's cookies only (no server visited in that context)."""
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{hub_url}/hub/login?next=%2Fhub%2Fhome")
        page.fill("#username_input", name)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url(lambda u: "/hub/login" not in u)
        return [c for c in ctx.cookies() if not c["path"].startswith("/user/")]
    finally:
        ctx.close()


def measure_spawn(browser, hub: BenchHub, name: str) -> float:
    """Seconds from the start click of a fresh user (signed up, logged in) to the visible launcher."""
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        signup_and_login(page, hub.url, name, PASSWORD)
        if hub.kind == GEMHUB:
            page.goto(f"{hub.url}/hub/spawn")
            submit = page.locator("#spawn_form input[type=submit], #spawn_form button[type=submit]").first
            submit.wait_for()
            t0 = time.perf_counter()
            submit.click()
        else:
            page.goto(f"{hub.url}/hub/home")
            t0 = time.perf_counter()
            page.goto(f"{hub.url}/hub/spawn")  # what "Start My Server" links to
        page.wait_for_selector(LAUNCHER, state="visible", timeout=180_000)
        return time.perf_counter() - t0
    finally:
        ctx.close()


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _progress(t0: float, what: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {what}", file=sys.stderr, flush=True)


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 cold + 2 warm loads and 1 spawn a side")
    ap.add_argument("--loads", type=int, default=None, help="cold and warm loads a side (default 7, quick 2)")
    ap.add_argument("--spawns", type=int, default=None,
                    help="fresh spawns a side (default 3, quick 1; 0: GemHub's server still starts, unmeasured)")
    ap.add_argument("--trace", type=Path, default=None, help="write every request of one load of each kind here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (hub and lab logs)")
    args = ap.parse_args(argv)
    n_loads = args.loads or (2 if args.quick else 7)
    n_spawns = args.spawns if args.spawns is not None else (1 if args.quick else 3)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is needed (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    load_before = _load_avg()
    workdir = Path(tempfile.mkdtemp(prefix="gemhub-bench-lab-"))
    workdir.chmod(0o755)
    t0 = time.monotonic()
    hub_users: list[str] = []
    hubs: dict[str, BenchHub] = {GEMHUB: BenchHub(workdir / GEMHUB, GEMHUB)}
    if n_spawns:
        hubs[BASELINE] = BenchHub(workdir / BASELINE, BASELINE)
    (workdir / "plain").mkdir()
    lab = PlainLab(workdir / "plain")
    loads: dict[tuple[str, str], list[dict]] = {(s, p): [] for s in (GEMHUB, "plain") for p in ("cold", "warm")}
    spawns: dict[str, list[float]] = {GEMHUB: [], BASELINE: []}
    traces: dict[str, list] = {}
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(h.start, 120) for h in hubs.values()] + [pool.submit(lab.start)]
            for f in futures:
                f.result()
        _progress(t0, "hubs and plain JupyterLab started")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # fresh spawns, alternated; the last GemHub user's server is the one loaded below
            name = ""
            for i in range(max(n_spawns, 1)):
                order = (GEMHUB, BASELINE) if i % 2 == 0 else (BASELINE, GEMHUB)
                for kind in order:
                    if kind not in hubs:
                        continue
                    user = f"lb{uuid.uuid4().hex[:8]}"
                    hub_users.append(user)
                    if kind == GEMHUB and i > 0 and name:  # only one GemHub server runs while loading
                        hubs[GEMHUB].api("DELETE", f"/users/{name}/server", timeout=60)
                    spawns[kind].append(measure_spawn(browser, hubs[kind], user))
                    if kind == GEMHUB:
                        name = user
                    else:
                        hubs[kind].api("DELETE", f"/users/{user}/server", timeout=60)
                    _progress(t0, f"{kind} spawn {i + 1}: {spawns[kind][-1]:.2f} s")
            if not n_spawns:
                spawns[GEMHUB].clear()
            if BASELINE in hubs:  # the stock hub is done: stop it so it costs nothing below
                hubs.pop(BASELINE).stop()
            gem = hubs[GEMHUB]
            # the user's hub cookies, without the single-user server's (a fresh login)
            cookies = _hub_cookies(browser, gem.url, name)
            cpus = {GEMHUB: ServerCPU(_gemhub_pids(gem, name)), "plain": ServerCPU({"server": lab.proc.pid})}
            urls = {GEMHUB: (f"{gem.url}/user/{name}/lab", f"{gem.url}/user/{name}/lab"),
                    "plain": (f"{lab.url}/lab?token={lab.token}", f"{lab.url}/lab")}

            def new_context(side):
                ctx = browser.new_context(viewport=VIEWPORT)
                if side == GEMHUB:
                    ctx.add_cookies(cookies)
                return ctx

            warm = {side: new_context(side) for side in urls}
            warm_pages = {side: ctx.new_page() for side, ctx in warm.items()}
            wires = {side: Wire(page) for side, page in warm_pages.items()}
            for side, page in warm_pages.items():  # primes the cache, and the plain server's first load
                _load(page, wires[side], urls[side][0], cpus[side])
            _progress(t0, "warm contexts primed")
            for i in range(n_loads):
                order = (GEMHUB, "plain") if i % 2 == 0 else ("plain", GEMHUB)
                for side in order:
                    ctx = new_context(side)
                    page = ctx.new_page()
                    trace = traces.setdefault(f"{side}-cold", []) if args.trace and i == 0 else None
                    loads[(side, "cold")].append(_load(page, Wire(page), urls[side][0], cpus[side], trace))
                    ctx.close()
                for side in order:
                    trace = traces.setdefault(f"{side}-warm", []) if args.trace and i == 0 else None
                    loads[(side, "warm")].append(_load(warm_pages[side], wires[side], urls[side][1], cpus[side], trace))
                _progress(t0, f"round {i + 1}: " + ", ".join(
                    f"{s} {p} {loads[(s, p)][-1]['ms']:.0f} ms" for s in (GEMHUB, "plain") for p in ("cold", "warm")))
            for ctx in warm.values():
                ctx.close()
            browser.close()
    finally:
        lab.stop()
        for h in hubs.values():
            h.stop()
        cleanup_unix_users(hub_users)
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = _load_avg()

    if args.trace:
        args.trace.write_text(json.dumps(traces, indent=1))
    print(f"\nJupyterLab 4 load until the launcher is visible, {n_loads} loads a side, alternated "
          f"(load average {load_before} before, {load_after} after, {os.cpu_count()} CPUs)")
    print(f"{'side':<26}{'phase':<6}{'median ms':>10}{'min':>8}{'max':>8}{'srv CPU':>8}{'redirect':>9}{'TTFB':>6}{'reqs':>6}"
          f"{'304s':>6}{'ext 304':>8}{'KB':>8}{'JS raw':>7}{'JS gz':>6}")
    med: dict[tuple[str, str], float] = {}
    for (side, phase), runs in loads.items():
        ms = [r["ms"] for r in runs]
        m, lo, hi = _stats(ms)
        med[(side, phase)] = m
        label = "GemHub (hub + proxy)" if side == GEMHUB else "plain JupyterLab"
        last = runs[-1]
        redirect = statistics.median(r["redirect_ms"] for r in runs)
        ttfb = statistics.median(r["ttfb_ms"] for r in runs)
        srv = statistics.median(r["server_cpu_ms"] for r in runs)
        print(f"{label:<26}{phase:<6}{m:>10.0f}{lo:>8.0f}{hi:>8.0f}{srv:>8.0f}{redirect:>9.0f}{ttfb:>6.0f}"
              f"{last['requests']:>6}{last['not_modified']:>6}"
              f"{last['ext_not_modified']:>8}{last['bytes'] / 1024:>8.0f}{last['js_plain']:>7}{last['js_gzip']:>6}")
    for phase in ("cold", "warm"):
        roles = loads[(GEMHUB, phase)][0]["cpu_by_role"]
        print(f"GemHub {phase} server-side CPU ms by process (median): " + ", ".join(
            f"{role} {statistics.median(r['cpu_by_role'][role] for r in loads[(GEMHUB, phase)]):.0f}" for role in roles))
    ratio_cold = med[(GEMHUB, "cold")] / med[("plain", "cold")]
    ratio_warm = med[(GEMHUB, "warm")] / med[("plain", "warm")]
    print(f"ratio GemHub / plain: cold {ratio_cold:.3f}, warm {ratio_warm:.3f}")
    summary = {
        "ratio_cold": round(ratio_cold, 3),
        "ratio_warm": round(ratio_warm, 3),
        "gemhub_cold_ms": round(med[(GEMHUB, "cold")]),
        "stock_cold_ms": round(med[("plain", "cold")]),
        "gemhub_warm_ms": round(med[(GEMHUB, "warm")]),
        "stock_warm_ms": round(med[("plain", "warm")]),
        "gemhub_cold_max_ms": round(max(r["ms"] for r in loads[(GEMHUB, "cold")])),
        "stock_cold_max_ms": round(max(r["ms"] for r in loads[("plain", "cold")])),
        "gemhub_warm_max_ms": round(max(r["ms"] for r in loads[(GEMHUB, "warm")])),
        "stock_warm_max_ms": round(max(r["ms"] for r in loads[("plain", "warm")])),
        "spawn_to_launcher_s": round(statistics.median(spawns[GEMHUB]), 2) if spawns[GEMHUB] else None,
        "stock_spawn_to_launcher_s": round(statistics.median(spawns[BASELINE]), 2) if spawns[BASELINE] else None,
        "loads": n_loads,
        "spawns": n_spawns,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "wall_s": round(time.monotonic() - t0, 1),
    }
    if spawns[GEMHUB]:
        g, b = spawns[GEMHUB], spawns[BASELINE]
        print(f"start click -> launcher, fresh spawn (s): GemHub median {statistics.median(g):.2f} "
              f"(max {max(g):.2f}), stock JupyterHub + SimpleLocalProcessSpawner median "
              f"{statistics.median(b):.2f} (max {max(b):.2f})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
