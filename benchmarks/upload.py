"""Upload throughput: a file through the hub's proxy into the data service (the resumable
protocol: chunks streamed to disk, hashed on the way, each fsync'd before it is answered)
against a plain PUT of the same file to a static file server on the same machine, in the
same run, with the same client.

The static server is Python's ``http.server`` with a PUT that streams the body to a file
and fsyncs it once at the end (no proxy, no auth, no checksum). The GemHub side starts a
real hub (tests/hubproc.py: jupyterhub + configurable-http-proxy + the quota and data
services), creates a dataset draft, sends the file in the service's suggested chunks and
completes the upload (size and sha256 verified server-side). Both sides use the same
client: ``http.client`` with the body handed to the kernel by ``socket.sendfile`` (less CPU
than curl, so what is compared is the servers' paths); GemHub's chunks are pipelined, two
in flight, as GemHub's own uploaders (browser, CLI) send them: the next chunk goes once the
one before is out whole, while the server makes that one durable. Both sides are timed
from the first byte sent to the final answer; the sides alternate, ``--runs`` times each
(best, median and worst reported: this machine is shared).

``--profile`` adds rows that take the path apart: the same GemHub upload one chunk at a
time (the client idle while each chunk is synced), straight to the data service's port
(no proxy hop), and the baseline with ``curl -T``; per process CPU (client, proxy, data
service and its event loop alone), and the data service's own timings of each chunk
(``Server-Timing``: receiving the body, then making it durable while the client waits).

    .venv/bin/python benchmarks/upload.py                 # 1 GB file
    .venv/bin/python benchmarks/upload.py --size-mb 200   # 200 MB, full run
    .venv/bin/python benchmarks/upload.py --quick         # 200 MB, 2 runs (< 60 s)
    .venv/bin/python benchmarks/upload.py --quick --profile

Last line: {"mb_s": ..., "baseline_mb_s": ..., "ratio": ..., ...}
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import http.server
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubproc import Hub, unique_name  # noqa: E402

MB = 10**6
API = "/services/data/api/v1"


class PutHandler(http.server.BaseHTTPRequestHandler):
    """PUT /name: stream the body into the server's folder, fsync, answer 201."""

    protocol_version = "HTTP/1.1"
    folder: Path
    cpu: list[float]  # CPU seconds of each PUT's thread

    def do_PUT(self):  # noqa: N802 (http.server's naming)
        cpu0 = time.thread_time()
        remaining = int(self.headers["Content-Length"])
        with open(self.folder / Path(self.path).name, "wb") as f:
            while remaining:
                buf = self.rfile.read(min(remaining, 1 << 20))
                if not buf:
                    break
                f.write(buf)
                remaining -= len(buf)
            f.flush()
            os.fsync(f.fileno())
        self.cpu.append(time.thread_time() - cpu0)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@dataclass
class Run:
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds
    receive_s: float = 0.0  # the data service receiving chunk bodies
    sync_s: float = 0.0  # chunks being made durable while the client waits for their answer


class Client:
    """The same HTTP client for every side: http.client, the body sent with sendfile."""

    def __init__(self, base: str, token: str | None = None):
        u = urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self.cpu = 0.0  # this thread's CPU seconds spent sending and reading answers

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=600)

    def send(self, conn: http.client.HTTPConnection, path: str, f, offset: int, length: int) -> None:
        """Headers, then ``length`` bytes of ``f`` from ``offset`` (returns once all are sent)."""
        cpu0 = time.thread_time()
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        for k, v in {**self.headers, "Content-Type": "application/octet-stream",
                     "Content-Length": str(length)}.items():
            conn.putheader(k, v)
        conn.endheaders()
        sent = conn.sock.sendfile(f, offset, length)
        if sent != length:
            raise RuntimeError(f"sent {sent} of {length} bytes")
        self.cpu += time.thread_time() - cpu0

    def answer(self, conn: http.client.HTTPConnection) -> tuple[dict, dict]:
        cpu0 = time.thread_time()
        r = conn.getresponse()
        body = r.read()
        self.cpu += time.thread_time() - cpu0
        if r.status >= 300:
            raise RuntimeError(f"PUT answered {r.status}: {body[:300]!r}")
        return (json.loads(body) if body else {}), {k.lower(): v for k, v in r.getheaders()}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def baseline(path: Path, workdir: Path, use_curl: bool = False) -> Run:
    """One plain PUT of the whole file to a static server on this machine."""
    folder = workdir / "static"
    folder.mkdir(exist_ok=True)
    cpu: list[float] = []
    handler = type("Handler", (PutHandler,), {"folder": folder, "cpu": cpu})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        size = path.stat().st_size
        curl0 = _children_cpu()
        t0 = time.perf_counter()
        if use_curl:
            subprocess.run(["curl", "-sS", "-f", "-T", str(path), "-H", "Expect:", url, "-o", "/dev/null"],
                           check=True)
        else:
            client = Client(url)
            conn = client.connect()
            with open(path, "rb") as f:
                client.send(conn, f"/{path.name}", f, 0, size)
            client.answer(conn)
            conn.close()
        seconds = time.perf_counter() - t0
        client_cpu = _children_cpu() - curl0 if use_curl else client.cpu
        return Run(seconds, {"client": client_cpu, "server": sum(cpu)})
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


class Processes:
    """CPU seconds of the hub's proxy and data service (read before and after a run)."""

    def __init__(self, hub: Hub):
        self.procs = {}
        for child in psutil.Process(hub.proc.pid).children():
            cmd = " ".join(child.cmdline())
            if "configurable-http-proxy" in cmd:
                self.procs["proxy"] = child
            elif "gemhub.services.data.app" in cmd:
                self.procs["data service"] = child

    def cpu(self) -> dict[str, float]:
        """Per process; the data service's also split into its event loop (main thread) and
        its other threads (chunk writers and hashing, syncs)."""
        out = {}
        for name, p in self.procs.items():
            t = p.cpu_times()
            out[name] = t.user + t.system
        service = self.procs["data service"]
        out["event loop"] = sum(t.user_time + t.system_time for t in service.threads() if t.id == service.pid)
        return out

    def data_port(self) -> int:
        return next(c.laddr.port for c in self.procs["data service"].net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN)


def gemhub_upload(base: str, token: str, asset_id: int, number: int, path: Path, digest: str, name: str,
                  chunk: int, procs: Processes, in_flight: int = 2) -> Run:
    """From the first chunk to the completed (verified) upload, through ``base`` (the hub's
    proxy, or the data service's own port), ``in_flight`` chunks at a time."""
    size = path.stat().st_size
    with httpx.Client(base_url=base, headers={"Authorization": f"token {token}"}, timeout=600) as api:
        r = api.post(f"{API}/assets/{asset_id}/versions/{number}/uploads",
                     json={"files": [{"path": name, "size": size, "sha256": digest}]})
        r.raise_for_status()
        uid = r.json()["uploads"][0]["id"]
        client = Client(base, token)
        conns = [client.connect() for _ in range(in_flight)]
        timings: list[str] = []
        cpu0 = procs.cpu()
        t0 = time.perf_counter()
        waiting: deque = deque()
        with open(path, "rb") as f:
            for i, offset in enumerate(range(0, size, chunk)):
                conn = conns[i % in_flight]
                if len(waiting) == in_flight:  # this connection's previous chunk: its answer first
                    timings.append(client.answer(waiting.popleft())[1].get("server-timing", ""))
                client.send(conn, f"{API}/uploads/{uid}?offset={offset}", f, offset, min(chunk, size - offset))
                waiting.append(conn)
            while waiting:
                timings.append(client.answer(waiting.popleft())[1].get("server-timing", ""))
        r = api.post(f"{API}/uploads/{uid}/complete")
        r.raise_for_status()
        seconds = time.perf_counter() - t0
        cpu1 = procs.cpu()
        for conn in conns:
            conn.close()
    spent = {"receive": 0.0, "sync": 0.0}
    for line in timings:
        for part in line.split(","):
            key, _, dur = part.strip().partition(";dur=")
            if key in spent:
                spent[key] += float(dur) / 1000
    cpu = {"client": client.cpu, **{k: cpu1[k] - cpu0[k] for k in cpu1}}
    return Run(seconds, cpu, spent["receive"], spent["sync"])


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    block = os.urandom(8 << 20)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            f.write(piece)
            h.update(piece)
            written += len(piece)
    return h.hexdigest()


def wait_data(hub: Hub, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hub.request("GET", "/services/data/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("the data service did not start")


def _row(label: str, size: int, runs: list[Run]) -> dict:
    cpu = {k: statistics.median(r.cpu.get(k, 0.0) for r in runs) for k in runs[0].cpu}
    return {"label": label, "mb_s": size / MB / min(r.seconds for r in runs),
            "median_mb_s": size / MB / statistics.median(r.seconds for r in runs),
            "worst_mb_s": size / MB / max(r.seconds for r in runs), "cpu": cpu,
            "receive_s": statistics.median(r.receive_s for r in runs), "sync_s": statistics.median(r.sync_s for r in runs)}


LABELS = {
    "baseline": "plain PUT -> static server (baseline)",
    "gemhub": "hub proxy -> data service, pipelined",
    "one at a time": "  same, one chunk at a time",
    "direct": "  same, data service port (no proxy)",
    "curl": "  baseline sent with curl -T",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 200 MB file, 2 runs (under a minute)")
    ap.add_argument("--size-mb", type=int, default=None, help="file size in MB (default 1000, quick 200)")
    ap.add_argument("--runs", type=int, default=None, help="runs of each side (default 3, quick 2)")
    ap.add_argument("--chunk-mb", type=float, default=None,
                    help="chunk size in MiB (default: what the data service suggests)")
    ap.add_argument("--profile", action="store_true",
                    help="also one chunk at a time, straight to the data service, and curl as the client")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (the hub's log)")
    args = ap.parse_args(argv)
    size = (args.size_mb or (200 if args.quick else 1000)) * MB
    runs = args.runs or (2 if args.quick else 3)
    if args.profile and not shutil.which("curl"):
        print("--profile needs curl", file=sys.stderr)
        return 2

    load_before = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="gemhub-bench-upload-"))
    workdir.chmod(0o755)
    hub = Hub(workdir / "hub", {"hub": {"log_level": "INFO"}})
    results: dict[str, list[Run]] = {}
    try:
        path = workdir / "payload.bin"
        digest = make_file(path, size)
        hub.start(timeout=180)
        wait_data(hub)
        procs = Processes(hub)
        _, token = hub.create_user(unique_name("bench"))
        a = hub.request("POST", f"{API}/assets", token=token, json={"name": "bench"}).json()
        v = hub.request("POST", f"{API}/assets/{a['id']}/versions", token=token, json={}).json()
        chunk = (int(args.chunk_mb * 2**20) if args.chunk_mb else
                 hub.request("GET", f"{API}/limits", token=token).json()["chunk_bytes"])

        def ours(base: str, in_flight: int = 2):
            return lambda i, label: gemhub_upload(base, token, a["id"], v["number"], path, digest,
                                                  f"{label.replace(' ', '-')}{i}.bin", chunk, procs, in_flight)

        sides = {"baseline": lambda i, label: baseline(path, workdir), "gemhub": ours(hub.url)}
        if args.profile:
            sides["one at a time"] = ours(hub.url, 1)
            sides["direct"] = ours(f"http://127.0.0.1:{procs.data_port()}")
            sides["curl"] = lambda i, label: baseline(path, workdir, use_curl=True)
        for i in range(runs):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))  # alternated
            for side in order:
                results.setdefault(side, []).append(sides[side](i, side))
            print(f"run {i + 1}: " + "   ".join(f"{side} {size / MB / results[side][-1].seconds:.1f} MB/s"
                                                for side in sides), file=sys.stderr, flush=True)
    finally:
        hub.stop()
        if args.keep:
            (workdir / "payload.bin").unlink(missing_ok=True)
            print(f"hub log: {hub.log_path}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = round(os.getloadavg()[0], 2)

    rows = {side: _row(LABELS[side], size, rs) for side, rs in results.items()}
    n_chunks = -(-size // chunk)
    print(f"\nfile {size / MB:.0f} MB in {n_chunks} chunks of {chunk / 2**20:g} MiB, {runs} runs a side, "
          f"alternated (load average {load_before} before, {load_after} after, {os.cpu_count()} CPUs)")
    print(f"{'path':<42}{'best MB/s':>10}{'median':>8}{'worst':>8}{'client':>8}{'server':>8}{'(loop)':>8}"
          f"{'proxy':>7}{'receive s':>10}{'sync wait s':>12}")
    print(f"{'':<42}{'':>26}{'CPU s':>8}{'CPU s':>8}{'':>8}{'CPU s':>7}")
    for side, row in rows.items():
        c = row["cpu"]
        server = c.get("server", c.get("data service", 0.0))
        loop = f"{c['event loop']:.2f}" if "event loop" in c else "-"
        proxy = f"{c['proxy']:.2f}" if "proxy" in c and side != "direct" else "-"
        timed = side in ("gemhub", "one at a time", "direct")
        receive = f"{row['receive_s']:.2f}" if timed else "-"
        sync = f"{row['sync_s']:.2f}" if timed else "-"
        print(f"{row['label']:<42}{row['mb_s']:>10.1f}{row['median_mb_s']:>8.1f}{row['worst_mb_s']:>8.1f}"
              f"{c.get('client', 0.0):>8.2f}{server:>8.2f}{loop:>8}{proxy:>7}{receive:>10}{sync:>12}")
    mb_s, baseline_mb_s = rows["gemhub"]["mb_s"], rows["baseline"]["mb_s"]
    ratio = mb_s / baseline_mb_s
    median_ratio = rows["gemhub"]["median_mb_s"] / rows["baseline"]["median_mb_s"]
    print(f"ratio GemHub / baseline: best {ratio:.2f}, median {median_ratio:.2f}")
    summary = {"mb_s": round(mb_s, 1), "baseline_mb_s": round(baseline_mb_s, 1), "ratio": round(ratio, 3),
               "median_ratio": round(median_ratio, 3), "size_mb": round(size / MB), "runs": runs,
               "chunk_mib": round(chunk / 2**20, 2), "sync_wait_s": round(rows["gemhub"]["sync_s"], 3),
               "load_avg_before": load_before, "load_avg_after": load_after}
    for side, key in (("one at a time", "one_at_a_time_mb_s"), ("direct", "direct_mb_s"), ("curl", "curl_baseline_mb_s")):
        if side in rows:
            summary[key] = round(rows[side]["mb_s"], 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
