"""A hub that builds images (the image tests share one per session) and a registry on loopback.

The hub uses the small test catalog (tests/images/catalog: the Debian root plus a venv with
jupyterhub-singleuser and JupyterLab), builds its base once per session, and pushes every
version to Debian's ``docker-registry`` started here on a free loopback port. The Debian
root's tarball and .debs are cached in /var/tmp/gemhub-test-images between sessions, as
pip caches wheels (a fresh machine bootstraps once).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from gemhub.services.images.rootfs import mount_points
from hubproc import REPO, Hub, free_port

CATALOG = REPO / "tests" / "images" / "catalog"
CACHE = Path(os.environ.get("GEMHUB_TEST_IMAGE_CACHE", "/var/tmp/gemhub-test-images"))
API = "/services/images/api/v1"
TOOLS = ("buildah", "bwrap", "debootstrap", "docker-registry")


def skip_without_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("image builds need root (buildah in chroot isolation, bubblewrap)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (tests/install-system-deps.sh installs them)")


class Registry:
    """Debian's docker-registry (distribution v2) on 127.0.0.1, plain HTTP, no auth."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.dir = workdir / "registry"
        self.dir.mkdir(parents=True)
        self.config = workdir / "registry.yml"
        self.config.write_text(yaml.safe_dump({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.dir)}, "delete": {"enabled": True}},
            "http": {"addr": self.host}}))
        self.log = workdir / "registry.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Registry":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")

    def tags(self, repository: str) -> list[str]:
        r = httpx.get(f"http://{self.host}/v2/{repository}/tags/list", timeout=10)
        return (r.json().get("tags") or []) if r.status_code == 200 else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def start_image_hub(artifacts: Path, extra: dict | None = None, workdir: Path | None = None) -> tuple[Hub, Registry]:
    """A started image hub; ``workdir`` (kept by the caller) reuses its built images."""
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="gemhub-test-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    shutil.rmtree(work / "registry", ignore_errors=True)
    registry = Registry(work).start()
    config = {"images": {"autobuild": True, "default": "base", "catalog_dir": str(CATALOG),
                         "cache_dir": str(CACHE), "registry": registry.host, "registry_tls_verify": False,
                         "build_concurrency": 2}}
    for key, value in (extra or {}).items():
        config.setdefault(key, {}).update(value)
    hub = Hub(work, config)
    hub.start(timeout=120)
    return hub, registry


def unmount_under(folder: Path) -> list[str]:
    """Unmount everything mounted under ``folder``, deepest first (lazily: a mount some
    process still holds goes when it lets go): versions' root filesystems, buildah's layer
    mounts and the overlay driver's own bind of its folder. Returns what was mounted."""
    prefix = os.path.abspath(folder).rstrip("/") + "/"
    found = sorted((p for p in mount_points() if p.startswith(prefix)), key=len, reverse=True)
    for point in found:
        subprocess.run(["umount", "-l", point], capture_output=True)
    return found


def stop_image_hub(hub: Hub, registry: Registry, artifacts: Path, keep: bool = False) -> None:
    """Stop the hub and the registry; their mounts go (the image service mounts its versions
    again when it starts: a kept ``workdir`` is like a machine after a reboot)."""
    hub.stop()
    registry.stop()
    unmount_under(hub.workdir)
    if keep:
        return
    shutil.copy(hub.log_path, artifacts / "images-hub.log")
    logs = hub.state_dir / "images" / "logs"
    if logs.is_dir():
        shutil.copytree(logs, artifacts / "images-build-logs", dirs_exist_ok=True)
    # the store is large (tens of thousands of files): removed in the background
    subprocess.Popen(["rm", "-rf", "--one-file-system", str(hub.workdir)], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def call(hub: Hub, token: str, method: str, path: str, **kw) -> httpx.Response:
    return hub.request(method, API + path, token=token, **kw)


def wait_built(hub: Hub, token: str, image_id: int, number: int, timeout: float = 900) -> dict:
    """Wait for a version to leave queued/building; returns it (whatever its state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = call(hub, token, "GET", f"/images/{image_id}/versions/{number}")
        assert r.status_code == 200, r.text
        v = r.json()
        if v["state"] not in ("preparing", "queued", "building"):
            return v
        time.sleep(1)
    log = call(hub, token, "GET", f"/images/{image_id}/versions/{number}/log").json()["text"]
    raise TimeoutError(f"version {number} of image {image_id} still building:\n{log[-3000:]}")


def official_base(hub: Hub, token: str) -> dict:
    items = call(hub, token, "GET", "/images", params={"kind": "official"}).json()["items"]
    return next(i for i in items if i["name"] == "base")


def wait_base(hub: Hub, timeout: float = 1200) -> dict:
    """The official (test) base, once built: every custom build starts from it."""
    token = hub.admin_token
    deadline = time.monotonic() + 60
    while True:
        try:
            base = official_base(hub, token)
            if base["building"] or base["latest_version"]:
                break
        except (StopIteration, httpx.HTTPError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the base image was never queued\n{hub.log_tail()}")
        time.sleep(1)
    if base["latest_version"] is None:
        v = wait_built(hub, token, base["id"], base["building"][0], timeout)
        if v["state"] != "succeeded":
            log = call(hub, token, "GET", f"/images/{base['id']}/versions/{v['number']}/log").json()["text"]
            raise RuntimeError(f"the test base image failed to build: {v['error']}\n{log[-4000:]}")
    return official_base(hub, token)


def build(hub: Hub, token: str, image_id: int, dockerfile: str, **body) -> dict:
    r = call(hub, token, "POST", f"/images/{image_id}/versions", json={"dockerfile": dockerfile, **body})
    assert r.status_code == 202, r.text
    return wait_built(hub, token, image_id, r.json()["number"])


def attach(info_file: str) -> tuple[Hub, Registry]:
    """A hub and registry already running (started by ``python tests/imagehub.py``, which
    writes their JSON description): developers iterate on image tests without rebuilding
    the test base each time (GEMHUB_TEST_IMAGES_HUB=<that file>)."""
    import json
    import types

    info = json.loads(Path(info_file).read_text().splitlines()[0])
    hub = Hub.__new__(Hub)
    hub.workdir = Path(info["workdir"])
    hub.state_dir, hub.log_path = hub.workdir / "state", hub.workdir / "hub.log"
    hub.url, hub.admin_token, hub.ssh_port = info["url"], info["token"], info["ssh_port"]
    hub.admin_password = info.get("admin_password", "")
    hub.api_url = f"{hub.url}/hub/api"
    hub.proc = types.SimpleNamespace(pid=info["pid"], poll=lambda: None)
    registry = Registry.__new__(Registry)
    registry.host, registry.proc = info["registry"], None
    return hub, registry


if __name__ == "__main__":
    import json
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "images-hub.json")
    hub, registry = start_image_hub(out.resolve().parent)
    out.write_text(json.dumps({"url": hub.url, "token": hub.admin_token, "workdir": str(hub.workdir),
                               "pid": hub.proc.pid, "registry": registry.host, "ssh_port": hub.ssh_port,
                               "admin_password": hub.admin_password}) + "\n")
    print(f"image hub at {hub.url}; building the test base; Ctrl-C stops it", flush=True)
    wait_base(hub)
    print("test base ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        stop_image_hub(hub, registry, out.resolve().parent)
