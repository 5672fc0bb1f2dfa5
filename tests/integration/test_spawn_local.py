"""LocalGemSpawner in a real hub: REST spawn, /gemini layout, limits, errors, crash safety.

Uses the shared ``hub`` and the ``make_hub`` factory from tests/conftest.py. While the quota
service is not installed (gemhub.services.quota.app missing), this module swaps in hubs
without it, where LocalGemSpawner falls back to the personal workspace.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gemhub.spawner.local import accounts, cgroups, names

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hubproc import Hub, unique_name  # noqa: E402

pytestmark = [pytest.mark.integration]
ROOT = os.geteuid() == 0


def unix_processes(unix_user: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["username", "status"])
            if p.info["username"] == unix_user and p.info["status"] != psutil.STATUS_ZOMBIE]


@pytest.fixture
def users():
    """Hub user names made by a test; their unix accounts are deleted afterwards."""
    made: list[str] = []
    yield made
    if not ROOT:
        return
    groups: list[str] = []
    for name in made:
        unix = names.unix_name(name)
        for p in unix_processes(unix):
            p.kill()
        groups += accounts.remove_user(unix)
    accounts.remove_empty_groups(sorted(set(groups)))


def new_user(hub: Hub, users: list[str]) -> tuple[str, str]:
    name, token = hub.create_user(unique_name("sp"))
    users.append(name)
    return name, token


def spawn(hub: Hub, name: str, **kw) -> dict:
    r = hub.api("POST", f"/users/{name}/server", **kw)
    assert r.status_code in (201, 202), r.text
    return hub.wait_server(name)


def server_api(hub: Hub, name: str, token: str, method: str, path: str, **kw) -> httpx.Response:
    """The user's single-user server, through the proxy."""
    return hub.request(method, f"/user/{name}/api/{path}", token=token, **kw)


def stop(hub: Hub, name: str) -> None:
    r = hub.api("DELETE", f"/users/{name}/server")
    assert r.status_code in (202, 204), r.text
    hub.wait_stopped(name)


def server_pid(hub: Hub, name: str) -> int:
    """The pid of the user's jupyterhub-singleuser (found by its JUPYTERHUB_USER)."""
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("jupyterhub-singleuser" in a for a in p.info["cmdline"] or []) and \
                    p.environ().get("JUPYTERHUB_USER") == name:
                return p.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no server process for {name}")


def test_rest_spawn_without_options(hub, users):
    name, token = new_user(hub, users)
    t0 = time.monotonic()
    server = spawn(hub, name)
    assert time.monotonic() - t0 < 30
    opts = server["user_options"]
    assert isinstance(opts["workspace_id"], int) and isinstance(opts["project_id"], int)
    assert opts["preset"] == "B1" and "workspace" not in opts and "project" not in opts  # ids only
    r = server_api(hub, name, token, "GET", "status")
    assert r.status_code == 200, r.text
    # the persisted options are what the hub (and the quota service) read back
    model = hub.api("GET", f"/users/{name}").json()
    assert model["servers"][""]["user_options"]["workspace_id"] == opts["workspace_id"]
    # resource usage sees the preset's limits
    pid = server_pid(hub, name)
    env = psutil.Process(pid).environ()
    assert env["MEM_LIMIT"] == str(2 * 1024**3) and env["CPU_LIMIT"] == "1"
    assert env["GEMHUB_PROJECT"] == "default" and env["GEMHUB_PRESET"] == "B1"
    assert "--allow-root" not in " ".join(psutil.Process(pid).cmdline())
    r = server_api(hub, name, token, "GET", "metrics/v1")
    assert r.status_code == 200 and r.json()["limits"]["memory"]["rss"] == 2 * 1024**3, r.text
    # the shipped JupyterLab overrides are on JUPYTER_CONFIG_PATH: DOM terminals, no news
    r = hub.request("GET", f"/user/{name}/lab/api/settings/@jupyterlab/terminal-extension:plugin",
                    token=token)
    assert r.status_code == 200, r.text
    assert r.json()["schema"]["properties"]["rendererType"]["default"] == "dom"
    r = hub.request("GET", f"/user/{name}/lab/api/settings/@jupyterlab/apputils-extension:notification",
                    token=token)
    assert r.json()["schema"]["properties"]["fetchNews"]["default"] == "false", r.text
    stop(hub, name)


def test_files_persist_and_data_is_readonly(hub, users):
    name, token = new_user(hub, users)
    spawn(hub, name)
    body = {"type": "file", "format": "text", "content": "kept"}
    r = server_api(hub, name, token, "PUT", "contents/code/kept.txt", json=body)
    assert r.status_code in (200, 201), r.text
    r = server_api(hub, name, token, "PUT", "contents/output/o.txt", json=body)
    assert r.status_code in (200, 201), r.text
    r = server_api(hub, name, token, "PUT", "contents/data-1/x.txt", json=body)
    assert r.status_code >= 400 and "Read-only file system" in r.text, r.text
    r = server_api(hub, name, token, "PUT", "contents/pretrain3/x.txt", json=body)
    assert r.status_code >= 400, r.text
    listing = server_api(hub, name, token, "GET", "contents/").json()
    assert {c["name"] for c in listing["content"]} >= {
        "code", "output", "data-1", "data-2", "data-3", "pretrain1", "pretrain2", "pretrain3"}
    stop(hub, name)
    spawn(hub, name)
    r = server_api(hub, name, token, "GET", "contents/code/kept.txt")
    assert r.status_code == 200 and r.json()["content"] == "kept", r.text
    stop(hub, name)


@pytest.mark.parametrize("options,match", [
    ({"preset": "nope"}, "unknown preset"),
    ({"colour": "red"}, "unknown option"),
    ({"workspace": "a/b"}, "not a valid name"),
])
def test_bad_user_options_are_400(hub, users, options, match):
    name, _ = new_user(hub, users)
    r = hub.api("POST", f"/users/{name}/server", json=options)
    assert r.status_code == 400, r.text
    assert match in r.json()["message"], r.text
    model = hub.api("GET", f"/users/{name}").json()
    assert not model["servers"] and not model["pending"]


@pytest.mark.skipif(not ROOT, reason="needs root (unix accounts, namespaces, cgroups)")
@pytest.mark.root
def test_unix_user_cgroup_and_terminal(hub, users):
    name, token = new_user(hub, users)
    spawn(hub, name, json={"preset": "S1"})
    unix = names.unix_name(name)
    sandbox = psutil.Process(server_pid(hub, name))  # bubblewrap, as root
    proc = next(c for c in sandbox.children(recursive=True) if c.username() == unix)
    pid = proc.pid
    assert proc.cwd() == "/gemini/code"
    unit = names.unit_name(unix)
    mem = Path(cgroups.ROOT, "memory", cgroups.PARENT, unit, "memory.limit_in_bytes")
    assert int(mem.read_text()) == 4 * 1024**3
    quota = Path(cgroups.ROOT, "cpu", cgroups.PARENT, unit, "cpu.cfs_quota_us")
    assert int(quota.read_text()) == 200_000
    assert f"memory:/{cgroups.PARENT}/{unit}" in Path(f"/proc/{pid}/cgroup").read_text()
    # a terminal opens in /gemini/code and is part of the server's cgroup
    r = server_api(hub, name, token, "POST", "terminals")
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    shells: list[psutil.Process] = []
    while not shells and time.monotonic() < deadline:
        shells = [c for c in proc.children(recursive=True) if c.name() in ("bash", "sh")]
        time.sleep(0.1)
    assert shells and shells[0].cwd() == "/gemini/code"
    # the mounts live in the server's namespace only
    assert "/gemini/code" not in Path("/proc/self/mountinfo").read_text()
    stop(hub, name)
    assert not unix_processes(unix)
    assert not mem.parent.exists()


@pytest.mark.skipif(not ROOT, reason="needs root (unix accounts, namespaces, cgroups)")
@pytest.mark.root
def test_server_survives_hub_crash(make_hub, users):
    h = make_hub()
    name, token = new_user(h, users)
    spawn(h, name)
    r = server_api(h, name, token, "PUT", "contents/code/before.txt",
                   json={"type": "file", "format": "text", "content": "x"})
    assert r.status_code in (200, 201), r.text
    pid = server_pid(h, name)
    old_group = h.proc.pid
    h.kill9()
    try:
        assert psutil.pid_exists(pid)
        h.start()
        model = h.api("GET", f"/users/{name}").json()
        assert model["servers"][""]["ready"], model
        r = server_api(h, name, token, "GET", "contents/code/before.txt")
        assert r.status_code == 200, r.text
        # a terminal, so stop() has a shell to clean up too
        assert server_api(h, name, token, "POST", "terminals").status_code == 200
        stop(h, name)
        unix = names.unix_name(name)
        deadline = time.monotonic() + 5
        while unix_processes(unix) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not unix_processes(unix)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        # the crashed hub's proxy and services (its process group) are ours to end
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == old_group:
                    p.send_signal(signal.SIGKILL)
            except (ProcessLookupError, psutil.Error):
                pass
