"""Custom image builds: a small image through the image service (REST, queue, policy,
context from the project's code folder, buildah in the build sandbox, root filesystem
export) against ``buildah bud`` run directly on the same Dockerfile and context, in the
same run, on the same image store.

The image: the test base (tests/images/catalog, built once by the hub) plus ``RUN pip
install`` of one wheel from the local cache (a small wheel made here, copied from the
project's code folder: no network). Each run's RUN line carries a fresh nonce, so both
sides really run pip and commit a layer, while the COPY layer and the base are warm in
both. One warm-up per side, then ``--runs`` builds each, order alternated; the figures
are medians. The service side is timed from the POST until the client learns that the
version ``succeeded``, following its log as the page does (each request waits for new text
or the build's end, ``?wait=``; one keep-alive connection), the baseline from the start to
the exit of ``buildah bud``.

    .venv/bin/python benchmarks/images.py            # 5 runs a side
    .venv/bin/python benchmarks/images.py --quick    # 2 runs a side

The hub's state lives in ``--workdir`` (default /var/tmp/gemhub-bench-images) and is kept:
the first run builds the test base there (minutes, reported, not measured), later runs
start at once.

Last line: {"build_s": ..., "baseline_s": ..., "ratio": ..., ...}
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubproc import unique_name  # noqa: E402
from imagehub import API, call, skip_without_tools, start_image_hub, stop_image_hub, wait_base  # noqa: E402

from gemhub.services.images import policy  # noqa: E402
from gemhub.services.images.storage import Store, local_reference  # noqa: E402
from gemhub.spawner import layout  # noqa: E402

WHEEL = "gemhub_bench-1.0-py3-none-any.whl"


def make_wheel(path: Path) -> None:
    """A small pure-Python wheel (what pip would take from its cache)."""
    files = {
        "gemhub_bench/__init__.py": "def hello():\n    return 'hello from a cached wheel'\n" + "# pad\n" * 2000,
        "gemhub_bench-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: gemhub-bench\nVersion: 1.0\n",
        "gemhub_bench-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: gemhub\nRoot-Is-Purelib: true\n"
                                           "Tag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
            z.writestr(name, data)
        record.append("gemhub_bench-1.0.dist-info/RECORD,,")
        z.writestr("gemhub_bench-1.0.dist-info/RECORD", "\n".join(record) + "\n")


def dockerfile(nonce: str) -> str:
    return (f"COPY {WHEEL} /tmp/wheels/\n"
            f"RUN pip install --no-index --no-cache-dir /tmp/wheels/{WHEEL} && echo {nonce} > /opt/bench-nonce\n")


def service_build(client: httpx.Client, image_id: int, text: str, base_id: int) -> float:
    start = time.monotonic()
    r = client.post(f"{API}/images/{image_id}/versions",
                    json={"dockerfile": text, "base": {"id": base_id}, "project": "default"})
    assert r.status_code == 202, r.text
    number = r.json()["number"]
    offset = 0
    while True:  # the page's way: follow the log; each answer waits for news (a long poll)
        log = client.get(f"{API}/images/{image_id}/versions/{number}/log",
                         params={"offset": offset, "wait": 25}).json()
        offset = log["offset"]
        if log["done"]:
            break
    elapsed = time.monotonic() - start
    if log["state"] != "succeeded":
        v = client.get(f"{API}/images/{image_id}/versions/{number}").json()
        raise RuntimeError(f"service build failed: {v['error']}")
    return elapsed


def direct_build(store: Store, base_ref: str, text: str, context: Path, tag: str) -> float:
    df = context.parent / f"{tag}.Containerfile"
    df.write_text(policy.check(text, base_ref).text)
    argv = store.buildah("bud", "--isolation", "chroot", "--pull=never", "--layers", "--format", "oci",
                         "-f", str(df), "-t", f"localhost/bench/direct:{tag}", str(context))
    start = time.monotonic()
    subprocess.run(argv, env=store.env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 runs a side (about a minute once the base is built)")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/gemhub-bench-images"),
                        help="kept between runs: the test base is built there once")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    try:
        skip_without_tools()
    except BaseException as e:  # pytest.skip raises its own exception type
        sys.exit(f"cannot run: {e}")
    artifacts = Path(tempfile.mkdtemp(prefix="gemhub-bench-images-"))
    hub, registry = start_image_hub(artifacts, {"images": {"registry": "", "build_concurrency": 1}}, args.workdir)
    try:
        t0 = time.monotonic()
        base = wait_base(hub)
        print(f"test base ready after {time.monotonic() - t0:.0f} s (built once per state directory)")
        name, token = hub.create_user(unique_name("bench"))
        ws = hub.request("GET", "/services/quota/api/v1/workspaces", token=token,
                         params={"include_projects": "1"}).json()["items"][0]
        code, _ = layout.project_dirs(hub.state_dir, ws["id"], ws["projects"][0]["id"])
        code.mkdir(parents=True, exist_ok=True)
        make_wheel(code / WHEEL)
        image = call(hub, token, "POST", "/images", json={"name": "bench", "workspace": ws["name"]}).json()
        store = Store(str(hub.state_dir), "overlay")
        base_ref = local_reference(base["id"], base["latest_version"])
        context = artifacts / "direct-context"
        context.mkdir()
        shutil.copy(code / WHEEL, context / WHEEL)
        # one keep-alive connection, as a browser's page has: a fresh httpx client per request
        # builds a TLS context each time (~25 ms of the client's own CPU per poll)
        client = httpx.Client(base_url=hub.url, headers={"Authorization": f"token {token}"}, timeout=30)
        # warm-up: the COPY layer and pip's first start, on both sides
        service_build(client, image["id"], dockerfile("warm-service"), base["id"])
        direct_build(store, base_ref, dockerfile("warm-direct"), context, "warm")
        tags = ["warm"]

        def direct_run(nonce: str) -> float:
            tags.append(nonce)
            return direct_build(store, base_ref, dockerfile(nonce), context, nonce)

        load_start = os.getloadavg()[0]
        rows = []
        for i in range(runs):
            pair = [("service", lambda n: service_build(client, image["id"], dockerfile(n), base["id"])),
                    ("buildah", direct_run)]
            if i % 2:
                pair.reverse()
            for side, fn in pair:
                rows.append((i, side, fn(f"{side}-{i}-{time.time_ns()}")))
        service = [s for _, side, s in rows if side == "service"]
        direct = [s for _, side, s in rows if side == "buildah"]
        print(f"\n{'run':>4}  {'side':<8} {'seconds':>8}")
        for i, side, s in rows:
            print(f"{i:>4}  {side:<8} {s:>8.2f}")
        build_s, baseline_s = statistics.median(service), statistics.median(direct)
        print(f"\nmedian: service {build_s:.2f} s, buildah bud {baseline_s:.2f} s;"
              f" spread service {min(service):.2f}-{max(service):.2f}, buildah {min(direct):.2f}-{max(direct):.2f}")
        result = {"build_s": round(build_s, 3), "baseline_s": round(baseline_s, 3),
                  "ratio": round(build_s / baseline_s, 3), "runs": runs,
                  "service_min_s": round(min(service), 3), "baseline_min_s": round(min(direct), 3),
                  "service_max_s": round(max(service), 3), "baseline_max_s": round(max(direct), 3),
                  "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2)}
        # the kept work folder stays lean: this run's versions (mounts, containers) and tags go
        call(hub, token, "DELETE", f"/images/{image['id']}")
        client.close()
        subprocess.run(store.buildah("rmi", *[f"localhost/bench/direct:{tag}" for tag in tags]), env=store.env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(json.dumps(result))
    finally:
        stop_image_hub(hub, registry, artifacts, keep=True)


if __name__ == "__main__":
    main()
