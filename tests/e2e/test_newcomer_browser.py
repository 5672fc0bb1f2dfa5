"""A new user's first hour, in Chromium and the OpenSSH client (issue 14).

Sign up; the home page says where you are (nothing running yet). Start the default server
(B1) from the home page, give the personal workspace a run-time limit (as the admin), then
name a second server: a bad name is explained in words, ``gpu`` opens its spawn page where
S1 is picked. The home page lists both with workspace, project, preset, device, run time
and, for ``gpu`` only (started under the limit), the countdown. SSH as ``alice`` and
``alice+gpu`` lands in each server (its preset, its device binding). Stopping ``gpu``
from the home page stops it alone and frees its device; SSH then says it is not running.
A fourth named server is refused (three per user by default) until one is deleted.
Screenshots go to test-artifacts/newcomer/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from browser import chromium_page, signup_and_login
from gemhub.spawner.local.record import record_path
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.root]

PASSWORD = "Newcomer-Pass-2026"
QUOTA = "/services/quota/api/v1"


def _require_ssh_tools():
    if os.geteuid() != 0:
        pytest.skip("the SSH gateway enters environments' mount namespaces: run as root")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (tests/install-system-deps.sh installs it as root)")


def row(page, server: str):
    return page.locator(f"#gemhub-server-table tr.gemhub-server[data-server-name='{server}']")


def wait_for_ssh(hub, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while hub.request("GET", "/services/ssh/health").status_code != 200:
        assert time.monotonic() < deadline, hub.log_tail()
        time.sleep(0.3)


def holders(hub) -> dict[str, str]:
    """device id -> user/server of every held device."""
    nodes = hub.api("GET", "/gemhub/devices").json()["nodes"]
    return {d["id"]: f"{h['user']}/{h['server']}" for n in nodes for d in n["devices"] for h in d["holders"]}


def test_new_user_runs_a_named_gpu_server_beside_the_default_one(hub, artifacts, tmp_path):
    _require_ssh_tools()
    shots = artifacts / "newcomer"
    name = unique_name("new")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    def ssh(login: str, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path}/known_hosts",
             "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key), "-p", str(hub.ssh_port),
             f"{login}@127.0.0.1", command], capture_output=True, text=True, timeout=90)

    with chromium_page(shots) as page:
        signup_and_login(page, hub.url, name, PASSWORD)
        page.goto(f"{hub.url}/hub/home")
        assert row(page, "").locator(".gemhub-server-status").inner_text() == "stopped"
        assert "not started yet" in row(page, "").inner_text()
        assert page.locator("#gemhub-workspaces .gemhub-workspace[data-workspace]").count() == 1
        assert "GemHub" in page.title() and "powered by JupyterHub" in page.inner_text("#gemhub-footer")
        page.screenshot(path=str(shots / "01-home-new.png"), full_page=True)

        # the default server, from the home page
        row(page, "").locator(".gemhub-start").click()
        page.wait_for_selector("#gemhub-preset-B1")
        page.check("#gemhub-preset-B1")
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000, wait_until="commit")

        # the hub admin gives the personal workspace a run-time limit: it applies from the next start
        token = hub.api("POST", f"/users/{name}/tokens", json={"note": "e2e"}).json()["token"]
        ws_id = hub.request("GET", f"{QUOTA}/workspaces", token=token).json()["items"][0]["id"]
        r = hub.request("PATCH", f"{QUOTA}/workspaces/{ws_id}", token=hub.admin_token,
                        json={"max_runtime_minutes": 90})
        assert r.status_code == 200, r.text

        # a named server: a bad name is explained before the hub is asked
        page.goto(f"{hub.url}/hub/home")
        page.fill("#gemhub-new-server-name", "My GPU box " + "x" * 40)
        page.click("#gemhub-new-server-start")
        problem = page.locator("#gemhub-new-server-problem")
        problem.wait_for()
        assert "cannot be a server name (51 characters)" in problem.inner_text()
        assert "1 to 30 lowercase letters" in problem.inner_text()
        page.fill("#gemhub-new-server-name", "gpu")
        page.click("#gemhub-new-server-start")
        page.wait_for_url(f"**/hub/spawn/{name}/gpu")
        page.check("#gemhub-preset-S1")
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url(f"**/user/{name}/gpu/lab**", timeout=90_000, wait_until="commit")

        # both on the home page: where they run, what they hold, how long, until when
        page.goto(f"{hub.url}/hub/home")
        default, gpu = row(page, ""), row(page, "gpu")
        assert default.get_attribute("data-status") == "running" == gpu.get_attribute("data-status")
        assert default.locator(".gemhub-server-preset").inner_text() == "B1"
        assert default.locator(".gemhub-server-device").inner_text() == "no accelerator"
        assert gpu.locator(".gemhub-server-preset").inner_text() == "S1"
        device = gpu.locator(".gemhub-server-device").inner_text()
        assert re.fullmatch(r"1 × RTX4090 \(.+ each\) · simulated \(local/\d+\)", device), device
        assert gpu.locator(".gemhub-server-workspace").inner_text() == f"{name} / default"
        assert gpu.locator(".gemhub-server-runtime").inner_text() in ("less than a minute", "1 min", "2 min")
        assert re.fullmatch(r"stops in 1 h (29|30) min", gpu.locator(".gemhub-stops").inner_text())
        assert default.locator(".gemhub-stops").count() == 0  # started before the limit
        assert f"{name}+gpu" in page.inner_text("#gemhub-ssh")
        page.screenshot(path=str(shots / "02-home-two-servers.png"), full_page=True)
        held = holders(hub)
        assert f"{name}/gpu" in held.values() and f"{name}/" not in held.values()
        # each server its own cgroup (CPU/memory limits apply per server)
        records = {s: json.loads(record_path(hub.state_dir, name, s).read_text()) for s in ("", "gpu")}
        cgroups = {s: set(r["cgroup_procs"]) for s, r in records.items()}
        assert cgroups["gpu"] and cgroups[""] and not cgroups["gpu"] & cgroups[""]

        # SSH: alice and alice+gpu land in their own server
        wait_for_ssh(hub)
        r = hub.request("POST", "/services/ssh/api/v1/keys", token=token,
                        json={"public_key": key.with_suffix(".pub").read_text()})
        assert r.status_code == 201, r.text
        probe = 'echo "$GEMHUB_PRESET|$NVIDIA_VISIBLE_DEVICES|$CUDA_VISIBLE_DEVICES|$(pwd)"'
        r = ssh(f"{name}+gpu", probe)
        assert r.returncode == 0, r.stderr
        preset, nvidia, cuda, cwd = r.stdout.strip().split("|")
        assert (preset, cwd) == ("S1", "/gemini/code") and cuda != "" and nvidia != "none"
        r = ssh(name, probe)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().split("|")[:2] == ["B1", "none"]

        # stop the named one from the home page: the default one keeps running
        gpu.locator(".gemhub-stop").click()
        page.wait_for_function(
            "() => document.querySelector(\"tr.gemhub-server[data-server-name='gpu']\").dataset.status === 'stopped'",
            timeout=60_000)
        assert row(page, "").get_attribute("data-status") == "running"
        page.screenshot(path=str(shots / "03-gpu-stopped.png"), full_page=True)
        servers = hub.api("GET", f"/users/{name}").json()["servers"]
        assert "" in servers and "gpu" not in servers
        deadline = time.monotonic() + 15  # the post-stop hook releases the device
        while f"{name}/gpu" in holders(hub).values() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert f"{name}/gpu" not in holders(hub).values()
        r = ssh(f"{name}+gpu", "true")
        assert r.returncode != 0 and "your server 'gpu' is not running" in r.stderr, r.stderr

        # three named servers per user (spawner.named_servers_per_user): gpu and two more
        for extra in ("b1", "b2"):
            r = hub.request("PUT", f"/hub/api/users/{name}/servers/{extra}", token=token, json={})
            assert r.status_code == 201, r.text
        r = hub.request("PUT", f"/hub/api/users/{name}/servers/b3", token=token, json={})
        assert r.status_code == 400 and "maximum of 3 named servers" in r.json()["message"], r.text
        page.goto(f"{hub.url}/hub/home")
        assert page.is_disabled("#gemhub-new-server-name")
        assert "Delete a stopped one to make another" in page.inner_text("#gemhub-new-server")
        page.once("dialog", lambda d: d.accept())
        with page.expect_navigation():  # the page reloads once the hub has deleted it
            row(page, "b2").locator(".gemhub-delete").click()
        assert row(page, "b2").count() == 0 and page.is_enabled("#gemhub-new-server-name")

        # the data service's "Workspaces" link goes straight to the quota service
        page.goto(f"{hub.url}/services/data/")
        assert page.get_attribute("#nav-workspaces", "href") == "/services/quota/"

    hub.api("DELETE", f"/users/{name}/server")
    hub.wait_stopped(name)
