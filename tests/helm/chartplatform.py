"""GemHub as helm/gemhub deploys it, on this machine: the proxy, the hub and GemHub's
services started from the Deployments the chart renders (podrun.py), against the fake
Kubernetes API and test kubelet of the spawner tests (tests/kube/), with Debian's
PostgreSQL as the external database the values name.

Everything runs in a private network namespace (the chart's fixed ports 8000/8001/8081 meet
nothing else on this shared machine) with the Services' names on its loopback, so root is
required. Used by tests/helm/test_chart_hub.py and benchmarks/chart_hub.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import chartkit  # noqa: E402
import podrun  # noqa: E402
from netns import private_network  # noqa: E402

REPO = chartkit.REPO
VENV_BIN = Path(sys.executable).parent
PROXY = "http://127.0.0.1:8000"  # the proxy pod's port (proxy-public's target)
ADMIN_PASSWORD = "chart-Admin-pw-7391"
SERVICES = ("quota", "data", "ssh")
PG_HOST = "pg.example.internal"
VALUES = {
    "platform": {"admin": {"password": ADMIN_PASSWORD}},
    "database": {"type": "external", "external": {
        "urls": {n: f"postgresql://postgres@{PG_HOST}:5432/gemhub_{n}" for n in SERVICES}}},
    "jupyterhub": {"singleuser": {"image": {"name": "gemhub/notebook", "tag": "test"}}},
}


def missing() -> str:
    """Why the platform cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root: network and mount namespaces stand in for the cluster's network"
    if pg_bin() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if not (REPO / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        return "configurable-http-proxy is missing (make install)"
    return ""


def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def wait_for(probe, what: str, timeout: float = 120, logs: tuple[Path, ...] = (),
             procs: dict[str, subprocess.Popen] | None = None, every: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        dead = [n for n, proc in (procs or {}).items() if proc.poll() is not None]
        if dead:
            last = f"exited: {', '.join(dead)}"
            break
        try:
            value = probe()
            if value:
                return value
        except (httpx.HTTPError, OSError) as e:
            last = e
        time.sleep(every)
    tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                      for p in logs if p.exists())
    raise AssertionError(f"{what} not ready ({last!r})\n{tails}")


class Postgres:
    """Debian's PostgreSQL on the namespace's loopback, one database per service."""

    def __init__(self, root: Path):
        self.bin = pg_bin()
        self.dir = root / "pg"

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        shutil.chown(self.dir, "postgres", "postgres")
        run = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*run, str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        opts = f"-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories={self.dir}"
        subprocess.run([*run, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", opts, "-w",
                        "-l", str(self.dir / "log"), "start"], check=True, capture_output=True)
        for name in SERVICES:
            subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
                            f"CREATE DATABASE gemhub_{name}"], check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "stop"], capture_output=True)


class Platform:
    def __init__(self, work: Path, cluster: podrun.Cluster, bg):
        self.work = work
        self.cluster = cluster
        self.bg = bg
        self.procs: dict[str, subprocess.Popen] = {}
        self._admin_token = ""

    def log(self, name: str) -> Path:
        return self.work / "cluster" / f"{name}.log"

    def start(self, deployment: str, **kw) -> None:
        self.procs[deployment] = self.cluster.start("Deployment", deployment, log=self.log(deployment), **kw)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5  # nothing here is under test any more: a short grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> tuple[Path, ...]:
        return tuple(self.log(n) for n in self.procs)

    def get(self, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx.get(f"{PROXY}{path}", headers=headers, timeout=30, **kw)

    def api(self, method: str, path: str, token: str, **kw) -> httpx.Response:
        return httpx.request(method, f"{PROXY}/hub/api{path}", headers={"Authorization": f"token {token}"},
                             timeout=30, **kw)

    def admin_token(self) -> str:
        """What the admin does: log in with the password from the chart's Secret, make a token."""
        if self._admin_token:
            return self._admin_token
        with httpx.Client(base_url=PROXY, timeout=30) as s:
            s.get("/hub/login")
            xsrf = s.cookies.get("_xsrf")
            r = s.post("/hub/login", data={"username": "admin", "password": ADMIN_PASSWORD, "_xsrf": xsrf})
            assert r.status_code in (200, 302) and "jupyterhub-session-id" in s.cookies, r.text[-500:]
            xsrf = [c.value for c in s.cookies.jar if c.name == "_xsrf"][-1]  # the logged-in session's
            r = s.post("/hub/api/users/admin/tokens", json={"note": "chart"}, headers={"X-XSRFToken": xsrf})
            assert r.status_code == 201, r.text
            self._admin_token = r.json()["token"]
        return self._admin_token

    def user(self, name: str) -> str:
        """A new hub user and a token of theirs."""
        admin = self.admin_token()
        r = self.api("POST", f"/users/{name}", admin)
        assert r.status_code == 201, r.text
        return self.api("POST", f"/users/{name}/tokens", admin, json={"note": "t"}).json()["token"]

    def wait_ready(self, name: str, timeout: float = 180) -> None:
        admin = self.admin_token()
        wait_for(lambda: self.api("GET", f"/users/{name}", admin).json()["servers"].get("", {}).get("ready"),
                 f"{name}'s server", timeout=timeout, logs=self.logs(), every=0.5)


@contextmanager
def running(values: dict | None = None, artifacts: Path | None = None) -> Iterator[Platform]:
    """The chart's platform, started and stopped (its logs copied to ``artifacts``)."""
    from kube.cluster import write_kubeconfig
    from kube.kubelet import BackgroundCluster

    chartkit.prepare_chart()
    objects = [chartkit.clean(o) for o in chartkit.render(values or VALUES)]
    work = Path(tempfile.mkdtemp(prefix="gemhub-chart-"))
    work.chmod(0o755)
    cluster = podrun.Cluster(objects, chartkit.NAMESPACE, work / "cluster", extra_hosts=(PG_HOST,))
    cluster.workdir.mkdir()
    pg = Postgres(work)
    with private_network():
        pg.start()
        try:
            with BackgroundCluster(work / "kubelet", kubelet_prefix=tuple(cluster.wrapper())) as bg:
                kubeconfig = write_kubeconfig(work / "kubeconfig", bg.cluster.url)
                p = Platform(work, cluster, bg)
                try:
                    p.start("proxy", path=[str(REPO / "node_modules" / ".bin")])
                    # in the cluster the hub finds the API through its ServiceAccount; kmock
                    # speaks plain HTTP, so through a kubeconfig instead
                    p.start("hub", workdir="/srv/jupyterhub", path=[str(VENV_BIN)],
                            extra_env={"KUBECONFIG": str(kubeconfig)})
                    for name in SERVICES:
                        p.start(f"gemhub-{name}", path=[str(VENV_BIN)])
                    wait_for(lambda: p.get("/hub/api/").status_code == 200, "hub", logs=p.logs(), procs=p.procs)
                    for name in SERVICES:
                        wait_for(lambda: p.get(f"/services/{name}/health").status_code == 200, name,
                                 logs=p.logs(), procs=p.procs)
                    yield p
                finally:
                    p.stop()
                    if artifacts is not None:
                        artifacts.mkdir(parents=True, exist_ok=True)
                        for log in (work / "cluster").glob("*.log"):
                            shutil.copy(log, artifacts / log.name)
        finally:
            pg.stop()
            shutil.rmtree(work, ignore_errors=True)
