"""The quota service's process lives and dies with the hub; its data outlives both."""

from __future__ import annotations

import time

import psutil
import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration


def quota_processes(hub) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "gemhub.services.quota.app" in cmd and any(str(hub.state_dir) in c for c in cmd):
            out.append(p)
    return out


def test_service_dies_with_a_killed_hub_and_restarts(make_hub):
    hub = make_hub()
    name, token = hub.create_user(unique_name("ql"))
    r = hub.request("POST", "/services/quota/api/v1/workspaces", token, json={"name": unique_name("keep")})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    [service] = quota_processes(hub)

    hub.kill9()
    gone, alive = psutil.wait_procs([service], timeout=15)
    assert service in gone, "the quota service outlived the hub (PR_SET_PDEATHSIG)"

    hub.start()  # same ports: nothing left holding the service's port
    assert hub.request("GET", "/services/quota/health").status_code == 200
    r = hub.request("GET", f"/services/quota/api/v1/workspaces/{wid}", token)
    assert r.status_code == 200 and r.json()["role"] == "owner"


def test_service_stops_cleanly_with_the_hub(make_hub):
    hub = make_hub()
    [service] = quota_processes(hub)
    hub.proc.terminate()
    hub.proc.wait(45)
    gone, _ = psutil.wait_procs([service], timeout=15)
    assert gone
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and quota_processes(hub):
        time.sleep(0.2)
    assert not quota_processes(hub)
