"""Upload throughput: a file through the hub's proxy into the data service (the resumable
protocol: chunks streamed to disk, fsync'd, hashed on the way) against a plain ``curl``
PUT of the same file to a static file server on the same machine, in the same run.

The static server is Python's ``http.server`` with a PUT that streams the body to a file
and fsyncs it once at the end (no proxy, no auth, no checksum); curl sends the file with
``-T``. The GemHub side starts a real hub (tests/hubproc.py: jupyterhub +
configurable-http-proxy + the quota and data services), creates a dataset draft and sends
the file in the service's suggested chunks, then completes the upload (size and
sha256 verified server-side); its chunks go out with curl too (one process, one ``-T``
per chunk, connection kept alive), so the client is the same on both sides. Both sides are timed from the first byte sent to the final
answer, and each is run ``--runs`` times (best run reported, as the others are noise from
this shared machine).

    .venv/bin/python benchmarks/upload.py            # 1 GB file
    .venv/bin/python benchmarks/upload.py --quick    # 200 MB, < 60 s

Last line: {"mb_s": ..., "baseline_mb_s": ..., "ratio": ..., ...}
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubproc import Hub, unique_name  # noqa: E402

MB = 10**6


class PutHandler(http.server.BaseHTTPRequestHandler):
    """PUT /name: stream the body into the server's folder, fsync, answer 201."""

    folder: Path

    def do_PUT(self):  # noqa: N802 (http.server's naming)
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
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def baseline(path: Path, workdir: Path) -> float:
    """Seconds for ``curl -T`` to a static PUT server on this machine."""
    folder = workdir / "static"
    folder.mkdir(exist_ok=True)
    handler = type("Handler", (PutHandler,), {"folder": folder})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        t0 = time.perf_counter()
        subprocess.run(["curl", "-sS", "-f", "-T", str(path), "-H", "Expect:", url, "-o", "/dev/null"],
                       check=True)
        return time.perf_counter() - t0
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


def gemhub_upload(hub: Hub, token: str, asset_id: int, number: int, path: Path, digest: str, name: str,
                  chunks: list[tuple[int, Path]]) -> float:
    """Seconds from the first chunk to the completed (verified) upload through the proxy.

    The chunks (pre-split files, not timed) are sent by one ``curl`` invocation, one
    ``-T`` per chunk on a kept-alive connection, so both sides use the same client."""
    api = f"{hub.url}/services/data/api/v1"
    headers = {"Authorization": f"token {token}"}
    size = path.stat().st_size
    with httpx.Client(headers=headers, timeout=600) as client:
        r = client.post(f"{api}/assets/{asset_id}/versions/{number}/uploads",
                        json={"files": [{"path": name, "size": size, "sha256": digest}]})
        r.raise_for_status()
        uid = r.json()["uploads"][0]["id"]
        args = ["curl", "-sS", "-f", "-H", f"Authorization: token {token}", "-H", "Expect:",
                "-H", "Content-Type: application/octet-stream"]
        for offset, piece in chunks:
            args += ["-T", str(piece), f"{api}/uploads/{uid}?offset={offset}", "-o", "/dev/null"]
        t0 = time.perf_counter()
        subprocess.run(args, check=True)
        r = client.post(f"{api}/uploads/{uid}/complete")
        r.raise_for_status()
        return time.perf_counter() - t0


def split(path: Path, chunk: int) -> list[tuple[int, Path]]:
    out = []
    with open(path, "rb") as f:
        offset = 0
        while data := f.read(chunk):
            piece = path.with_name(f"{path.name}.{offset}")
            piece.write_bytes(data)
            out.append((offset, piece))
            offset += len(data)
    return out


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


def wait_data(hub: Hub, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hub.request("GET", "/services/data/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("the data service did not start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 200 MB file (under a minute)")
    ap.add_argument("--size-mb", type=int, default=None, help="file size in MB (default 1000, quick 200)")
    ap.add_argument("--runs", type=int, default=None, help="runs of each side (default 3, quick 2)")
    args = ap.parse_args(argv)
    size = (args.size_mb or (200 if args.quick else 1000)) * MB
    runs = args.runs or (2 if args.quick else 3)
    if not shutil.which("curl"):
        print("curl is needed for the baseline", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="gemhub-bench-upload-"))
    workdir.chmod(0o755)
    hub = Hub(workdir / "hub", {"hub": {"log_level": "INFO"}})
    try:
        path = workdir / "payload.bin"
        digest = make_file(path, size)
        hub.start()
        wait_data(hub)
        _, token = hub.create_user(unique_name("bench"))
        api = "/services/data/api/v1"
        a = hub.request("POST", f"{api}/assets", token=token, json={"name": "bench"}).json()
        v = hub.request("POST", f"{api}/assets/{a['id']}/versions", token=token, json={}).json()
        chunk = hub.request("POST", f"{api}/assets/{a['id']}/versions/{v['number']}/uploads", token=token,
                            json={"files": [{"path": "probe", "size": 1, "sha256": "0" * 64}]}).json()["chunk_bytes"]
        chunks = split(path, chunk)
        ours, theirs = [], []
        for i in range(runs):
            theirs.append(baseline(path, workdir))
            ours.append(gemhub_upload(hub, token, a["id"], v["number"], path, digest, f"run{i}.bin", chunks))
            print(f"run {i + 1}: curl PUT {size / MB / theirs[-1]:7.1f} MB/s   "
                  f"GemHub {size / MB / ours[-1]:7.1f} MB/s", file=sys.stderr, flush=True)
    finally:
        hub.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    mb_s = size / MB / min(ours)
    baseline_mb_s = size / MB / min(theirs)
    print(f"\nfile {size / MB:.0f} MB, best of {runs} runs each")
    print(f"{'path':<46}{'MB/s':>10}")
    print(f"{'curl PUT -> static server (baseline)':<46}{baseline_mb_s:>10.1f}")
    print(f"{'hub proxy -> data service (chunked, verified)':<46}{mb_s:>10.1f}")
    print(f"{'ratio':<46}{mb_s / baseline_mb_s:>10.2f}")
    print(json.dumps({"mb_s": round(mb_s, 1), "baseline_mb_s": round(baseline_mb_s, 1),
                      "ratio": round(mb_s / baseline_mb_s, 3), "size_mb": round(size / MB), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
