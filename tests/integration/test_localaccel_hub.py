"""Accelerators on the local runtime in a real hub (one hub for the module, simulated devices):
what each preset puts in the server's environment, no whole device shared by concurrent
spawns (the second waits in the ledger's queue and starts when the first stops), allocations
kept across a hub crash, custom specs and workspace preset limits, the admin device page and
API (denied to others), maintenance, metrics."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gemhub.spawner.local import accounts, names
from hubproc import Hub, unique_name

pytestmark = [pytest.mark.integration]

QUOTA = "/services/quota/api/v1"
PASSWORD = "Gem-pass-4821"
CONFIG = {
    "accelerators": {
        "inventory": "simulated",
        "simulated": [{"node": "local", "model": "A100-80G", "count": 1},
                      {"node": "local", "model": "RTX4090", "count": 1},
                      {"node": "edge", "model": "910B", "count": 1}],
    },
    "presets": [
        {"name": "B1", "cpu": 1, "memory": "1G", "accelerator": "0", "price_per_hour": "0.50"},
        {"name": "S1", "cpu": 1, "memory": "1G", "accelerator": "0.5(A100-80G)", "use": "training",
         "price_per_hour": "6.00"},
        {"name": "P1", "cpu": 1, "memory": "1G", "accelerator": "1(RTX4090)", "use": "training",
         "price_per_hour": "3.00"},
        {"name": "P2", "cpu": 1, "memory": "1G", "accelerator": "2(A100-80G)", "use": "training",
         "price_per_hour": "24.00"},
    ],
}


@pytest.fixture(scope="module")
def hub():
    workdir = Path(tempfile.mkdtemp(prefix="gemhub-test-"))
    h = Hub(workdir, CONFIG)
    h.start()
    yield h
    h.stop()
    artifacts = Path(os.environ.get("GEMHUB_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    if h.log_path.exists():
        shutil.copy(h.log_path, artifacts / "localaccel-hub.log")
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def users(hub):
    """new() -> (name, token); servers are stopped and unix accounts removed afterwards."""
    made: list[str] = []

    def new(prefix: str = "la") -> tuple[str, str]:
        name, token = hub.create_user(unique_name(prefix))
        made.append(name)
        return name, token

    yield new
    for name in made:
        hub.api("DELETE", f"/users/{name}/server")
    for name in made:
        hub.wait_stopped(name)
        if os.geteuid() == 0:
            accounts.remove_empty_groups(accounts.remove_user(names.unix_name(name)))


def spawn(hub: Hub, name: str, **options) -> httpx.Response:
    return hub.api("POST", f"/users/{name}/server", json=options)


def server_env(hub: Hub, name: str) -> dict[str, str]:
    """The environment of the user's running jupyterhub-singleuser process."""
    hub.wait_server(name)
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("jupyterhub-singleuser" in a for a in p.info["cmdline"] or []) and \
                    p.environ().get("JUPYTERHUB_USER") == name:
                return p.environ()
        except psutil.Error:
            continue
    raise AssertionError(f"no server process for {name}")


def progress_until(hub: Hub, name: str, needle: str, timeout: float = 60) -> str:
    """The spawn's progress messages (the hub's event stream) until one contains ``needle``."""
    seen = []
    with httpx.stream("GET", f"{hub.api_url}/users/{name}/server/progress", timeout=timeout,
                      headers={"Authorization": f"token {hub.admin_token}"}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:]).get("message", "")
                seen.append(message)
                if needle in message:
                    return message
    raise AssertionError(f"no progress message with {needle!r}: {seen}")


def pending(hub: Hub, name: str) -> str | None:
    return hub.api("GET", f"/users/{name}").json().get("pending")


def stop(hub: Hub, name: str) -> None:
    assert hub.api("DELETE", f"/users/{name}/server").status_code in (202, 204)
    hub.wait_stopped(name)


def holders(hub: Hub) -> dict[str, list[str]]:
    r = hub.api("GET", "/gemhub/devices")
    assert r.status_code == 200, r.text
    return {d["id"]: [h["user"] for h in d["holders"]] for n in r.json()["nodes"] for d in n["devices"]}


def gemhub(hub: Hub, *args: str) -> str:
    """The `gemhub` console script with the hub admin's token."""
    env = dict(os.environ, GEMHUB_URL=hub.url, GEMHUB_TOKEN=hub.admin_token)
    r = subprocess.run([str(Path(sys.executable).parent / "gemhub"), *args], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def login(hub: Hub, name: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=hub.url, timeout=30, follow_redirects=False)

    def post(path, data):
        page = c.get(path)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        return c.post(path, data={**data, **({"_xsrf": xsrf.group(1)} if xsrf else {})})

    if name != "admin" and c.get("/hub/signup").status_code == 200:
        post("/hub/signup", {"username": name, "signup_password": password,
                             "signup_password_confirmation": password})
    r = post("/hub/login", {"username": name, "password": password})
    assert r.status_code == 302, r.text
    return c


def test_each_preset_sets_the_device_environment(hub, users):
    fraction, whole, none = users(), users(), users()
    for (name, _), preset in ((fraction, "S1"), (whole, "P1"), (none, "B1")):
        r = spawn(hub, name, preset=preset)
        assert r.status_code in (201, 202), r.text
    env = server_env(hub, fraction[0])
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "0"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40960M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    info = json.loads(env["GEMHUB_ACCELERATOR"])
    assert info["spec"] == "0.5(A100-80G)" and info["kind"] == "fraction" and info["simulated"] is True
    assert info["devices"][0]["memory_limit_mib"] == 40960 and info["devices"][0]["model"] == "A100-80G"
    env = server_env(hub, whole[0])
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env
    assert json.loads(env["GEMHUB_ACCELERATOR"])["devices"][0]["id"] == "local/1"
    env = server_env(hub, none[0])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "none" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert json.loads(env["GEMHUB_ACCELERATOR"])["devices"] == []
    assert "simulated device: no MPS daemon is started" in hub.log_path.read_text()
    held = holders(hub)
    assert held["local/0"] == [fraction[0]] and held["local/1"] == [whole[0]]
    admin = login(hub, "admin", hub.admin_password)
    row = re.search(r'<tr class="gemhub-device" data-device="local/0".*?</tr>', admin.get("/hub/gemhub/devices").text,
                    re.S).group(0)
    assert f"{fraction[0]} (40.0 GiB, 50%)" in row, row
    admin.close()
    for name, _ in (fraction, whole, none):
        stop(hub, name)
    assert holders(hub) == {"local/0": [], "local/1": [], "edge/0": []}


def test_concurrent_spawns_never_share_a_whole_device(hub, users):
    a, b = users(), users()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda n: spawn(hub, n, preset="P1"), [a[0], b[0]]))
    assert all(r.status_code in (201, 202) for r in answers), [(r.status_code, r.text) for r in answers]
    # one holds the only RTX4090; the other waits in the ledger's queue, its place shown
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            hub.api("GET", f"/users/{n}").json()["servers"].get("", {}).get("ready") for n in (a[0], b[0])):
        time.sleep(0.3)
    winner = a[0] if hub.api("GET", f"/users/{a[0]}").json()["servers"].get("", {}).get("ready") else b[0]
    loser = b[0] if winner == a[0] else a[0]
    assert progress_until(hub, loser, "waiting for a free RTX4090") == "waiting for a free RTX4090: 1st of 1"
    assert pending(hub, loser) == "spawn" and holders(hub)["local/1"] == [winner]
    # released on stop: the waiting spawn gets the device by itself
    stop(hub, winner)
    assert server_env(hub, loser)["CUDA_VISIBLE_DEVICES"] == "1"
    assert holders(hub)["local/1"] == [loser]
    stop(hub, loser)


def test_bad_specs_and_presets_that_never_fit_are_400(hub, users):
    name, _ = users()
    r = spawn(hub, name, preset="P2")
    assert r.status_code == 400 and "cannot run on this platform" in r.json()["message"], r.text
    r = spawn(hub, name, accelerator="0.5(A100-80G)")
    assert r.status_code == 400 and "custom accelerator spec" in r.json()["message"], r.text
    # the hub admin may type one; the parser's message comes back as is
    r = hub.api("POST", "/users/admin/server", json={"accelerator": "2(Z9000)"})
    assert r.status_code == 400 and "accelerator spec '2(Z9000)'" in r.json()["message"], r.text
    r = hub.api("POST", "/users/admin/server", json={"accelerator": "1.5"})
    assert r.status_code == 400 and "column" in r.json()["message"], r.text
    assert not hub.api("GET", "/users/admin").json()["servers"]


def test_workspace_preset_limits_and_custom_spec(hub, users):
    name, token = users()
    ws = hub.request("GET", f"{QUOTA}/workspaces", token=token).json()["items"][0]
    # a workspace owner is not a hub admin
    r = hub.request("PATCH", f"{QUOTA}/workspaces/{ws['id']}", token=token, json={"custom_spec": True})
    assert r.status_code == 403, r.text
    r = hub.request("PATCH", f"{QUOTA}/workspaces/{ws['id']}", token=hub.admin_token,
                    json={"allowed_presets": ["B1", "S9"]})
    assert r.status_code == 400 and "'S9'" in r.json()["message"], r.text
    out = gemhub(hub, "admin", "limits", str(ws["id"]), "--presets", "B1,S1", "--custom-spec")
    assert "presets B1, S1; custom spec allowed" in out
    r = spawn(hub, name, preset="P1")
    assert r.status_code == 400 and "may not use preset 'P1'" in r.json()["message"], r.text
    r = spawn(hub, name, preset="B1", accelerator="0.5(A100-80G")
    assert r.status_code == 400 and "column" in r.json()["message"], r.text
    r = spawn(hub, name, preset="B1", accelerator="0.25(A100-80G)")
    assert r.status_code in (201, 202), r.text
    env = server_env(hub, name)
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M" and env["GEMHUB_PRESET"] == "B1"
    table = gemhub(hub, "admin", "devices").splitlines()
    assert any(line.startswith("local/0") and line.endswith(name) for line in table), table
    stop(hub, name)


def test_spawn_form_shows_accelerators_and_rerenders_bad_specs(hub, users):
    name, token = users("lf")
    c = login(hub, name, PASSWORD)
    ws = hub.request("GET", f"{QUOTA}/workspaces", token=token).json()["items"][0]
    assert hub.request("PATCH", f"{QUOTA}/workspaces/{ws['id']}", token=hub.admin_token,
                       json={"custom_spec": True}).status_code == 200
    page = c.get("/hub/spawn")
    assert page.status_code == 200, page.text
    html = page.text
    assert "0.5 of one A100-80G (40 GiB memory cap) · simulated" in html and "6.00 points/hour" in html
    assert re.search(r'<input[^>]*value="P2"[^>]*disabled data-never="1"', html)
    assert '<div class="form-group mb-3" id="gemhub-custom-spec">' in html  # this workspace may
    action = re.search(r'<form[^>]*action="([^"]+)"', html).group(1).replace("&amp;", "&")
    r = c.post(action, data={"preset": "B1", "accelerator": "3(V100"})
    assert r.status_code == 400 and "column" in r.text and "Traceback" not in r.text
    assert 'name="accelerator"' in r.text  # the form again, with the message
    c.close()


def test_admin_device_page_api_maintenance_and_metrics(hub, users):
    name, token = users()
    for method, path in (("GET", "/hub/api/gemhub/devices"), ("POST", "/hub/api/gemhub/devices")):
        r = hub.request(method, path, token=token, json={"device": "local/1", "maintenance": True})
        assert r.status_code == 403 and "administrators" in r.json()["message"], r.text
    assert hub.request("GET", "/hub/api/gemhub/metrics", token=token).status_code == 403
    user_session = login(hub, name, PASSWORD)
    assert user_session.get("/hub/gemhub/devices").status_code == 403
    assert "gemhub/devices" not in user_session.get("/hub/home").text  # no nav link
    user_session.close()

    r = hub.api("POST", "/gemhub/devices", json={"device": "local/9", "maintenance": True})
    assert r.status_code == 404, r.text
    r = hub.api("POST", "/gemhub/devices", json={"device": "local/1", "maintenance": "yes"})
    assert r.status_code == 400, r.text
    r = hub.api("POST", "/gemhub/devices", json={"device": "local/1", "node": "local", "maintenance": True})
    assert r.status_code == 400, r.text

    admin = login(hub, "admin", hub.admin_password)
    page = admin.get("/hub/gemhub/devices")
    assert page.status_code == 200, page.text
    # reached from the nav bar's Console: its Devices tab shows the same inventory
    assert 'id="gemhub-nav-console" href="/hub/gemhub/admin"' in admin.get("/hub/home").text
    tab = admin.get("/hub/gemhub/admin/devices")
    assert tab.status_code == 200 and re.search(r'data-device="local/1" data-status="online"', tab.text)
    assert "simulated devices: no real hardware is bound" in page.text
    assert re.search(r'data-device="local/1" data-status="online"', page.text)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    r = admin.post("/hub/gemhub/devices", data={"_xsrf": xsrf, "device": "local/1", "maintenance": "on"})
    assert r.status_code == 303, r.text
    assert re.search(r'data-device="local/1" data-status="maintenance"', admin.get("/hub/gemhub/devices").text)
    # the only RTX4090 is out of service: the spawn waits for it
    assert spawn(hub, name, preset="P1").status_code == 202
    assert progress_until(hub, name, "waiting for a free RTX4090")
    r = admin.post("/hub/gemhub/devices", data={"_xsrf": xsrf, "device": "local/1", "maintenance": "off"})
    assert r.status_code == 303
    hub.wait_server(name)  # back in service: the waiting spawn starts by itself
    stop(hub, name)
    # a whole node, through the JSON API
    r = hub.api("POST", "/gemhub/devices", json={"node": "edge", "maintenance": True})
    edge = next(n for n in r.json()["nodes"] if n["name"] == "edge")
    assert edge["maintenance"] and edge["devices"][0]["status"] == "maintenance"
    hub.api("POST", "/gemhub/devices", json={"node": "edge", "maintenance": False})
    admin.close()

    assert spawn(hub, name, preset="P1").status_code in (201, 202)
    hub.wait_server(name)
    r = hub.api("GET", "/gemhub/metrics")
    assert r.status_code == 200, r.text
    known = [line for line in r.text.splitlines() if line.startswith("gemhub_accelerator_memory_total_mib{")]
    assert len(known) == 3 and all('simulated="true"' in line for line in known), r.text
    assert any('modelName="RTX4090"' in line for line in known)
    # simulated devices have no sensors: no utilisation or memory-use series is made up
    load = ("DCGM_FI_DEV_GPU_UTIL{", "DCGM_FI_DEV_FB_USED{")
    assert not [line for line in r.text.splitlines() if line.startswith(load)], r.text
    stop(hub, name)


@pytest.mark.skipif(os.geteuid() != 0, reason="servers outlive a hub crash only in the root runtime's sessions")
def test_allocation_survives_a_hub_crash(hub, users):
    name, _ = users()
    other, _ = users()
    assert spawn(hub, name, preset="P1").status_code in (201, 202)
    hub.wait_server(name)
    old_group = hub.proc.pid
    hub.kill9()
    try:
        hub.start()
        assert hub.api("GET", f"/users/{name}").json()["servers"][""]["ready"]
        assert holders(hub)["local/1"] == [name]
        assert spawn(hub, other, preset="P1").status_code == 202  # waits: the device is still held
        assert progress_until(hub, other, "waiting for a free RTX4090")
        stop(hub, name)
        hub.wait_server(other)
        assert holders(hub)["local/1"] == [other]
        stop(hub, other)
    finally:
        # the crashed hub's proxy and services (its process group) are ours to end
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == old_group:
                    p.send_signal(signal.SIGKILL)
            except (ProcessLookupError, psutil.Error):
                pass
