"""A hub killed (-9) after the ledger admitted a server and its process started, but before
JupyterHub wrote the spawner's state: after the restart the ledger matches what runs (the
entry is closed, the orphan process stopped by reconciliation) and the device goes to
exactly one new server. (The quota service killed mid-admission: test_quota_ledger.py.)"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from gemhub.spawner.local import accounts, names
from hubproc import unique_name
from ledgerproc import quota_token

pytestmark = [pytest.mark.integration]

API = "/services/quota/api/v1"


def server_process(name: str) -> psutil.Process | None:
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("jupyterhub-singleuser" in a for a in p.info["cmdline"] or []) and \
                    p.environ().get("JUPYTERHUB_USER") == name:
                return p
        except psutil.Error:
            continue
    return None


def holders(hub, device: str) -> list[str]:
    view = hub.request("GET", f"{API}/devices", token=quota_token(hub), params={"user": "admin"}).json()
    return [h["user"] for n in view["nodes"] for d in n["devices"] if d["id"] == device for h in d["holders"]]


def eventually(probe, timeout: float = 90, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or probe}"
        time.sleep(0.2)


@pytest.mark.skipif(os.geteuid() != 0, reason="servers outlive a hub crash only in the root runtime's sessions")
def test_hub_killed_between_admission_and_state_write(ledger_hub):
    hub = ledger_hub
    name, _ = hub.create_user(unique_name("cr"))
    other, _ = hub.create_user(unique_name("cr"))
    orphan = None
    hub.spawn_pause.touch()
    try:
        assert hub.api("POST", f"/users/{name}/server", json={"preset": "G1"}).status_code == 202
        reached = hub.spawn_pause.with_name(hub.spawn_pause.name + ".reached")
        eventually(reached.exists, what="the spawn to pause after its launch")
        orphan = server_process(name)
        assert orphan is not None
        ledger, ident = orphan.environ()["GEMHUB_ADMISSION"].split(".")
        entry = hub.request("GET", f"{API}/admissions/{ident}", token=quota_token(hub), params={"user": name}).json()
        assert entry["state"] == "admitted" and entry["holder"] == f"server:{name}/" and entry["ledger"] == ledger
        assert holders(hub, "n2/0") == [name]

        old_group = hub.proc.pid
        hub.kill9()
        for p in psutil.process_iter(["pid"]):  # the dead hub's proxy and services, not the orphan
            try:
                if os.getpgid(p.pid) == old_group:
                    p.send_signal(signal.SIGKILL)
            except (ProcessLookupError, psutil.Error):
                pass
        hub.spawn_pause.unlink()
        assert orphan.is_running()
        hub.start()

        # the restarted hub has no such server: its entry is closed and the orphan stopped
        eventually(lambda: not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE, what="the orphan")
        entry = hub.request("GET", f"{API}/admissions/{ident}", token=quota_token(hub), params={"user": name}).json()
        assert entry["state"] == "released", entry
        assert not hub.api("GET", f"/users/{name}").json()["servers"]
        assert holders(hub, "n2/0") == []
        # nothing double-booked: the device goes to exactly one new server
        assert hub.api("POST", f"/users/{other}/server", json={"preset": "G1"}).status_code in (201, 202)
        hub.wait_server(other)
        assert holders(hub, "n2/0") == [other]
        events = hub.request("GET", f"{API}/admissions/{ident}/events", token=quota_token(hub),
                             params={"user": name}).json()["items"]
        assert [e["event"] for e in events][-1] in ("released", "orphan-stopped")
    finally:
        hub.spawn_pause.unlink(missing_ok=True)
        if orphan is not None and orphan.is_running():
            orphan.kill()
        hub.api("DELETE", f"/users/{other}/server")
        hub.wait_stopped(other)
        if os.geteuid() == 0:
            for n in (name, other):
                accounts.remove_empty_groups(accounts.remove_user(names.unix_name(n)))
