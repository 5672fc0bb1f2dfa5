"""Idle culling through the real hub: the idle-culler service stops a server nobody uses
after the (test-shortened) timeout, and leaves a fresh one alone."""

from __future__ import annotations

import time

import pytest

from hubproc import Hub, unique_name

pytestmark = pytest.mark.integration

TIMEOUT, EVERY = 20, 5


@pytest.fixture(scope="module")
def cullhub():
    from conftest import _keep_log, _workdir

    h = Hub(_workdir(), {"culling": {"enabled": True, "timeout": TIMEOUT, "every": EVERY}})
    h.start()
    yield h
    h.stop()
    _keep_log(h, "lab-culling")


def test_idle_server_is_stopped_after_the_timeout(cullhub):
    name, token = cullhub.create_user(unique_name("idle"))
    r = cullhub.request("POST", f"/hub/api/users/{name}/server", token=token, json={})
    assert r.status_code in (201, 202), r.text
    cullhub.wait_server(name)
    started = time.monotonic()

    # Still there well before the timeout...
    time.sleep(TIMEOUT / 2)
    assert "" in cullhub.api("GET", f"/users/{name}").json()["servers"]
    # ...and stopped by the culler within a few checks after it.
    cullhub.wait_stopped(name, timeout=TIMEOUT + 6 * EVERY)
    assert time.monotonic() - started >= TIMEOUT - EVERY
    log = cullhub.log_tail(600)
    assert f"stopping {name}/: idle" in log or f"Culling server {name}" in log, log[-2000:]

    # The user can start again; the new server is not culled at once.
    r = cullhub.request("POST", f"/hub/api/users/{name}/server", token=token, json={})
    assert r.status_code in (201, 202), r.text
    cullhub.wait_server(name)
    time.sleep(EVERY + 1)
    assert "" in cullhub.api("GET", f"/users/{name}").json()["servers"]
