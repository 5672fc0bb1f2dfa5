"""The rendered chart really starts: the hub, the proxy and GemHub's services run from the
Deployments helm/gemhub renders (their commands, environment, Secret and ConfigMap files
where z2jh's jupyterhub_config.py and GemHub's configuration read them), against the fake
Kubernetes API and test kubelet of the spawner tests (tests/kube/). A REST spawn goes
through it to the pod's JupyterLab, and the services the chart registers answer through the
proxy.

Everything runs in a private network namespace (the chart's fixed ports 8000/8001/8081 meet
nothing else on this machine) with the Services' names on its loopback (/etc/hosts in each
process's mount namespace), so root is required. PostgreSQL is Debian's, as the external
database the values name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import chartkit  # noqa: E402
import podrun  # noqa: E402
from netns import private_network  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.root]

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


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def wait_for(probe, what: str, timeout: float = 120, logs: tuple[Path, ...] = (),
             procs: dict[str, subprocess.Popen] | None = None):
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
        time.sleep(0.3)
    tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                      for p in logs if p.exists())
    raise AssertionError(f"{what} not ready ({last!r})\n{tails}")


class Postgres:
    """Debian's PostgreSQL on this namespace's loopback, one database per service."""

    def __init__(self, root: Path):
        self.bin = _pg_bin()
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
        self.admin_token = ""

    def log(self, name: str) -> Path:
        return self.work / "cluster" / f"{name}.log"

    def start(self, deployment: str, **kw) -> None:
        self.procs[deployment] = self.cluster.start("Deployment", deployment, log=self.log(deployment), **kw)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
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


@pytest.fixture(scope="module")
def platform():
    if os.geteuid() != 0:
        pytest.skip("needs root: network and mount namespaces stand in for the cluster's network")
    if _pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    if not (REPO / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        pytest.skip("configurable-http-proxy is missing (make install)")
    chartkit.prepare_chart()
    from kube.cluster import write_kubeconfig
    from kube.kubelet import BackgroundCluster

    objects = [chartkit.clean(o) for o in chartkit.render(VALUES)]
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
                        wait_for(lambda: p.get(f"/services/{name}/health").status_code == 200, name, logs=p.logs(),
                                 procs=p.procs)
                    yield p
                finally:
                    p.stop()
                    _keep_logs(work)
        finally:
            pg.stop()
            shutil.rmtree(work, ignore_errors=True)


def _keep_logs(work: Path) -> None:
    artifacts = Path(os.environ.get("GEMHUB_TEST_ARTIFACTS", REPO / "test-artifacts")) / "chart-hub"
    artifacts.mkdir(parents=True, exist_ok=True)
    for log in (work / "cluster").glob("*.log"):
        shutil.copy(log, artifacts / log.name)


def admin_token(p: Platform) -> str:
    """What the admin does: log in with the password from the chart's Secret, make a token."""
    if p.admin_token:
        return p.admin_token
    with httpx.Client(base_url=PROXY, timeout=30) as s:
        s.get("/hub/login")
        xsrf = s.cookies.get("_xsrf")
        r = s.post("/hub/login", data={"username": "admin", "password": ADMIN_PASSWORD, "_xsrf": xsrf})
        assert r.status_code in (200, 302) and "jupyterhub-session-id" in s.cookies, r.text[-500:]
        xsrf = [c.value for c in s.cookies.jar if c.name == "_xsrf"][-1]  # the logged-in session's
        r = s.post("/hub/api/users/admin/tokens", json={"note": "chart test"}, headers={"X-XSRFToken": xsrf})
        assert r.status_code == 201, r.text
        p.admin_token = r.json()["token"]
        return p.admin_token


def test_rest_spawn_through_the_rendered_hub_reaches_jupyterlab(platform):
    p = platform
    admin = admin_token(p)
    name = "alice"
    assert p.api("POST", f"/users/{name}", admin).status_code == 201
    token = p.api("POST", f"/users/{name}/tokens", admin, json={"note": "t"}).json()["token"]

    r = p.api("POST", f"/users/{name}/server", token, json={"preset": "B1"})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: p.api("GET", f"/users/{name}", admin).json()["servers"].get("", {}).get("ready"),
             "alice's server", logs=p.logs())

    (pod,) = p.bg.call(p.bg.cluster.pods)
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "gemhub/notebook:test"  # z2jh's singleuser.image
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"gemini-storage": "gemhub-workspaces"}  # the chart's RWX claim
    assert c["workingDir"] == "/gemini/code"
    assert pod["metadata"]["labels"]["release"] == chartkit.RELEASE  # z2jh's common labels
    # the real pod's labels get through no GemHub NetworkPolicy but the SSH gateway's port
    for policy in (o for o in p.cluster.objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].startswith("gemhub-")):
        for rule in chartkit.admits(policy, pod["metadata"]["labels"]):
            assert rule.get("ports") == [{"port": "ssh"}], (policy["metadata"]["name"], rule)

    r = p.get(f"/user/{name}/api/contents/code", token)
    assert r.status_code == 200 and r.json()["type"] == "directory", r.text
    r = p.get(f"/user/{name}/lab", token)
    assert r.status_code == 200 and "JupyterLab" in r.text

    r = p.api("DELETE", f"/users/{name}/server", token)
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: not p.api("GET", f"/users/{name}", admin).json()["servers"], "stop")
    wait_for(lambda: p.bg.call(p.bg.cluster.pods) == [], "pod deletion")


def test_services_registered_by_the_chart_answer_through_the_hub(platform):
    p = platform
    admin = admin_token(p)
    services = {s["name"]: s for s in p.api("GET", "/services", admin).json().values()}
    for name in SERVICES:
        assert services[name]["url"] == f"http://gemhub-{name}:{8181 + SERVICES.index(name)}"
        assert services[name]["display"] is True
    assert services["idle-culler"]["command"]  # GemHub's culler, in the hub pod

    user = "bob"
    p.api("POST", f"/users/{user}", admin)
    token = p.api("POST", f"/users/{user}/tokens", admin, json={"note": "t"}).json()["token"]
    r = p.get("/services/quota/api/v1/workspaces", token)
    assert r.status_code == 200, r.text
    assert [w["personal"] for w in r.json()["items"]] == [True]
    r = p.get("/services/data/api/v1/assets", token)
    assert r.status_code == 200, r.text
    r = p.get("/services/ssh/api/v1/keys", token)
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    # without a token the services refuse, as behind any hub
    assert p.get("/services/quota/api/v1/workspaces").status_code in (401, 403)

    # the SSH gateway's own port (the gateway Service's target)
    with socket.create_connection(("127.0.0.1", 2222), timeout=10) as s:
        assert s.recv(64).startswith(b"SSH-2.0-")
