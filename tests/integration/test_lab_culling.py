"""Idle culling through the real hub: the idle-culler service stops a server nobody uses
after the (test-shortened) timeout, a server holding accelerators after the shorter
accelerator timeout, and then its devices are free again: per server, so a named server
holding a GPU goes while its owner's default server stays."""

from __future__ import annotations

import time

import pytest

from hubproc import Hub, unique_name

pytestmark = pytest.mark.integration

# TIMEOUT leaves room for a slow second spawn before the default server may go
TIMEOUT, ACCEL_TIMEOUT, EVERY = 32, 8, 4
CONFIG = {
    "culling": {"enabled": True, "timeout": TIMEOUT, "accelerator_timeout": ACCEL_TIMEOUT, "every": EVERY},
    "accelerators": {"inventory": "simulated", "simulated": [{"node": "local", "model": "A100-80G", "count": 1}]},
    "presets": [{"name": "B1", "cpu": 1, "memory": "1G", "accelerator": "0"},
                {"name": "G1", "cpu": 1, "memory": "1G", "accelerator": "1(A100-80G)"}],
}


@pytest.fixture(scope="module")
def cullhub():
    from hubproc import keep_log, workdir

    h = Hub(workdir(), CONFIG)
    h.start()
    yield h
    h.stop()
    keep_log(h, "lab-culling")


def start(hub: Hub, prefix: str, **options) -> tuple[str, str, float]:
    name, token = hub.create_user(unique_name(prefix))
    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json=options)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name)
    return name, token, time.monotonic()


def running(hub: Hub, name: str) -> bool:
    return "" in hub.api("GET", f"/users/{name}").json()["servers"]


def test_idle_server_is_stopped_after_the_timeout(cullhub):
    name, token, started = start(cullhub, "idle")

    time.sleep(TIMEOUT / 2)
    assert running(cullhub, name)  # not before the timeout...
    cullhub.wait_stopped(name, timeout=TIMEOUT + 6 * EVERY)  # ...but within a few checks after it
    assert time.monotonic() - started >= TIMEOUT - EVERY
    assert f"stopping {name}/: idle" in cullhub.log_tail(800)

    # The user can start again; the new server is not culled at once.
    r = cullhub.request("POST", f"/hub/api/users/{name}/server", token=token, json={})
    assert r.status_code in (201, 202), r.text
    cullhub.wait_server(name)
    time.sleep(EVERY + 1)
    assert running(cullhub, name)


def test_server_holding_accelerators_goes_first_and_frees_its_device(cullhub):
    def holders():
        nodes = cullhub.api("GET", "/gemhub/devices").json()["nodes"]
        return {d["id"]: [f"{h['user']}/{h['server']}" for h in d["holders"]] for n in nodes for d in n["devices"]}

    # one user: the default server without a device, the named server "gpu" with one
    user, token, _ = start(cullhub, "gpu", preset="B1")
    r = cullhub.request("POST", f"/hub/api/users/{user}/servers/gpu", token=token, json={"preset": "G1"})
    assert r.status_code in (201, 202), r.text
    cullhub.wait_server(user, "gpu")
    started = time.monotonic()
    assert holders() == {"local/0": [f"{user}/gpu"]}

    cullhub.wait_stopped(user, "gpu", timeout=ACCEL_TIMEOUT + 6 * EVERY)
    assert time.monotonic() - started < TIMEOUT  # the shorter timeout, not the general one
    assert running(cullhub, user)  # its default server stays
    assert f"stopping {user}/gpu: idle while holding accelerators" in cullhub.log_tail(800)
    deadline = time.monotonic() + 15  # the post-stop hook releases it
    while holders() != {"local/0": []} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert holders() == {"local/0": []}  # released: the next spawn may have it
