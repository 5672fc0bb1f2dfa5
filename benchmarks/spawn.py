"""Spawn-to-ready time: GemHub's LocalGemSpawner against JupyterHub's SimpleLocalProcessSpawner.

Starts three real hubs (tests/hubproc.py's Hub: jupyterhub + configurable-http-proxy, state
in a temporary directory) and measures the time from the REST spawn request (POST
/hub/api/users/NAME/server) until the hub reports the server ready, for N sequential spawns
and M concurrent spawns, the hubs taking turns in alternating order:

- ``baseline``: stock SimpleLocalProcessSpawner; its start() returns at once and the hub
  then polls the server with backoff (what JupyterHub does out of the box);
- ``baseline_same_poll``: the same spawner, waiting in start() until the server's port
  accepts connections with the same poll as LocalGemSpawner (gemhub.spawner.local.readiness),
  so both detect readiness the same way and the ratio measures GemHub's own start work;
- ``gemhub``: the platform as shipped (quota, data, ssh services, the idle culler), its
  servers in the bubblewrap sandbox.

Prints a table with p50/p95 and the ratios; the last line is JSON with ``ratio_p50`` (against
the stock baseline), ``ratio_p50_same_poll`` (against the fair one), ``ratio_p95``, ``p95_s``...

    .venv/bin/python benchmarks/spawn.py            # 20 sequential, 10 concurrent
    .venv/bin/python benchmarks/spawn.py --quick    # fewer spawns (< 60 s)

Unix accounts made for benchmark users are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubproc import Hub  # noqa: E402

BASELINE = "baseline"
SAME_POLL = "baseline_same_poll"
GEMHUB = "gemhub"
KINDS = (BASELINE, SAME_POLL, GEMHUB)
LABELS = {BASELINE: "SimpleLocalProcessSpawner", SAME_POLL: "Simple…, same readiness poll",
          GEMHUB: "LocalGemSpawner"}
# The fair baseline: SimpleLocalProcessSpawner waiting for its port like LocalGemSpawner does.
SAME_POLL_SPAWNER = """
from jupyterhub.spawner import SimpleLocalProcessSpawner
from gemhub.spawner.local import readiness


class SamePollSpawner(SimpleLocalProcessSpawner):
    async def start(self):
        url = await super().start()
        await readiness.until_listening(self.port, lambda: self.proc.poll() if self.proc else None)
        return url


c.JupyterHub.spawner_class = SamePollSpawner
"""


class BenchHub(Hub):
    """A Hub whose config file wraps the shipped one with a few extra lines."""

    def __init__(self, workdir: Path, kind: str):
        super().__init__(workdir, {"spawner": {"start_timeout": 120, "http_timeout": 60},
                                   "hub": {"log_level": "INFO"}})
        self.kind = kind
        lines = [f"load_subconfig({str(REPO / 'hub_config' / 'jupyterhub_config.py')!r})"]
        if kind in (BASELINE, SAME_POLL):
            # The stock local spawner; as root, jupyterhub-singleuser needs --allow-root.
            lines += [
                "c.JupyterHub.spawner_class = 'simple'",
                "c.SimpleLocalProcessSpawner.args = ['--allow-root'] if __import__('os').geteuid() == 0 else []",
                f"c.SimpleLocalProcessSpawner.home_dir_template = {str(self.workdir / 'homes' / '{username}')!r}",
            ]
            # plain JupyterHub: none of GemHub's services, nor their roles and scopes
            lines += [
                "c.JupyterHub.services = []",
                "c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles if not r.get('services')]",
                "for r in c.JupyterHub.load_roles:",
                "    r['scopes'] = [s for s in r.get('scopes', []) if 'access:services' not in s]",
            ]
        if kind == SAME_POLL:
            lines += [SAME_POLL_SPAWNER]
        self.wrapper = self.workdir / "bench_config.py"
        self.wrapper.write_text("\n".join(lines) + "\n")
        self.hub_config = self.wrapper
        self.wait_for_quota = kind == GEMHUB

    # -- measurements --------------------------------------------------------------------
    def spawn_and_wait(self, name: str, timeout: float = 120) -> float:
        t0 = time.monotonic()
        r = self.api("POST", f"/users/{name}/server")
        if r.status_code not in (201, 202):
            raise RuntimeError(f"spawn of {name} answered {r.status_code}: {r.text}")
        while time.monotonic() - t0 < timeout:
            model = self.api("GET", f"/users/{name}").json()
            s = model.get("servers", {}).get("")
            if s and s.get("ready"):
                return time.monotonic() - t0
            if s is None and not model.get("pending"):
                raise RuntimeError(f"server of {name} failed\n{self.log_tail(30)}")
            time.sleep(0.05)
        raise TimeoutError(f"server of {name} not ready after {timeout}s")

    def stop_server(self, name: str) -> None:
        self.api("DELETE", f"/users/{name}/server", timeout=60)
        self.wait_stopped(name, timeout=60)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def _new_user(hub: "BenchHub", users: list[str]) -> str:
    name = f"b{uuid.uuid4().hex[:8]}"
    users.append(name)
    hub.api("POST", f"/users/{name}")
    return name


def measure(hubs: dict[str, "BenchHub"], n_seq: int, n_conc: int, users: list[str]) -> dict:
    """Rounds in which every hub spawns once (sequential) or a batch (concurrent), the order
    of the hubs reversed every round, so slow spells of this shared machine fall on all."""
    results = {kind: {"sequential": [], "concurrent": []} for kind in hubs}
    order = list(hubs)
    for _ in range(n_seq):
        for kind in order:
            hub = hubs[kind]
            name = _new_user(hub, users)
            results[kind]["sequential"].append(hub.spawn_and_wait(name))
            hub.stop_server(name)  # not measured, but finished before the next spawn
        order.reverse()
    if n_conc:
        for kind in order:
            hub = hubs[kind]
            batch = [_new_user(hub, users) for _ in range(n_conc)]
            with ThreadPoolExecutor(n_conc) as pool:
                results[kind]["concurrent"] = list(pool.map(hub.spawn_and_wait, batch))
            with ThreadPoolExecutor(n_conc) as pool:
                list(pool.map(hub.stop_server, batch))
    return results


def warm_up(hub: "BenchHub", users: list[str]) -> None:
    """One unmeasured spawn: whichever hub ran first would otherwise pay for cold caches
    (Python imports, JupyterLab assets) and make the other look faster."""
    warm = f"b{uuid.uuid4().hex[:8]}"
    users.append(warm)
    hub.api("POST", f"/users/{warm}")
    hub.spawn_and_wait(warm)
    hub.stop_server(warm)


def start_hubs(kinds: tuple[str, ...], workdir: Path) -> dict[str, "BenchHub"]:
    """Both hubs start together (idle hubs cost nothing during the other one's measurements)."""
    hubs = {kind: BenchHub(workdir / kind, kind) for kind in kinds}
    with ThreadPoolExecutor(len(hubs)) as pool:
        futures = [pool.submit(h.start, 90) for h in hubs.values()]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        stop_hubs(hubs, workdir)
        raise errors[0]
    return hubs


def stop_hubs(hubs: dict[str, "BenchHub"], workdir: Path) -> None:
    with ThreadPoolExecutor(len(hubs)) as pool:
        list(pool.map(lambda h: h.stop(), hubs.values()))
    for kind, hub in hubs.items():
        if hub.log_path.exists():
            shutil.copy(hub.log_path, workdir / f"{kind}.log")


def cleanup_unix_users(hub_users: list[str]) -> None:
    """Delete the unix accounts LocalGemSpawner made for these hub users (root only)."""
    if os.geteuid() != 0:
        return
    from gemhub.spawner.local.accounts import remove_empty_groups, remove_user
    from gemhub.spawner.local.names import unix_name

    groups: list[str] = []
    for hub_user in hub_users:
        name = unix_name(hub_user)
        for p in psutil.process_iter(["username"]):
            if p.info["username"] == name:
                try:
                    p.kill()
                except psutil.Error:
                    pass
        groups += remove_user(name)
    remove_empty_groups(sorted(set(groups)))


def _progress(t0: float, what: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 sequential and 2 concurrent spawns (< 60 s)")
    ap.add_argument("--sequential", type=int, default=None)
    ap.add_argument("--concurrent", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (hub logs)")
    args = ap.parse_args(argv)
    n_seq = args.sequential if args.sequential is not None else (2 if args.quick else 20)
    n_conc = args.concurrent if args.concurrent is not None else (2 if args.quick else 10)

    workdir = Path(tempfile.mkdtemp(prefix="gemhub-bench-"))
    workdir.chmod(0o755)
    t0 = time.monotonic()
    users: list[str] = []
    hubs: dict[str, BenchHub] = {}
    try:
        hubs = start_hubs(KINDS, workdir)
        _progress(t0, "hubs started")
        with ThreadPoolExecutor(len(hubs)) as pool:
            list(pool.map(lambda h: warm_up(h, users), hubs.values()))
        _progress(t0, "warmed up")
        results = measure(hubs, n_seq, n_conc, users)
        _progress(t0, "measured")
    finally:
        if hubs:
            stop_hubs(hubs, workdir)
            _progress(t0, "hubs stopped")
        cleanup_unix_users(users)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = []
    print(f"spawn-to-ready seconds ({n_seq} sequential, {n_conc} concurrent; "
          f"root={os.geteuid() == 0})")
    print(f"{'spawner':<32}{'phase':<12}{'n':>4}{'p50':>9}{'p95':>9}{'max':>9}")
    for kind, label in LABELS.items():
        for phase in ("sequential", "concurrent", "all"):
            vals = (results[kind]["sequential"] + results[kind]["concurrent"] if phase == "all"
                    else results[kind][phase])
            if not vals:
                continue
            p50, p95 = statistics.median(vals), percentile(vals, 95)
            rows.append((kind, phase, p50, p95))
            print(f"{label:<32}{phase:<12}{len(vals):>4}{p50:>9.2f}{p95:>9.2f}{max(vals):>9.2f}")
    all_b, all_s, all_g = (results[k]["sequential"] + results[k]["concurrent"] for k in KINDS)
    summary = {
        "ratio_p50": round(statistics.median(all_g) / statistics.median(all_b), 3),
        "ratio_p50_same_poll": round(statistics.median(all_g) / statistics.median(all_s), 3),
        "ratio_p95": round(percentile(all_g, 95) / percentile(all_b, 95), 3),
        "ratio_p95_same_poll": round(percentile(all_g, 95) / percentile(all_s, 95), 3),
        "p95_s": round(percentile(all_g, 95), 3),
        "p50_s": round(statistics.median(all_g), 3),
        "baseline_p50_s": round(statistics.median(all_b), 3),
        "baseline_p95_s": round(percentile(all_b, 95), 3),
        "same_poll_p50_s": round(statistics.median(all_s), 3),
        "sequential": n_seq,
        "concurrent": n_conc,
        "wall_s": round(time.monotonic() - t0, 1),
    }
    print(f"ratio (LocalGemSpawner / SimpleLocalProcessSpawner): p50 {summary['ratio_p50']}, "
          f"p95 {summary['ratio_p95']}; against the same readiness poll: p50 "
          f"{summary['ratio_p50_same_poll']}, p95 {summary['ratio_p95_same_poll']}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
