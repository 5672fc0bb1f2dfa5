"""The spawner's side of admission: the entry's id saved before anything runs, the queue's
position in progress(), a refusal as SpawnException, retries while the quota service is
down, leaving the queue when the spawn is cancelled, release after the server stops."""

from __future__ import annotations

import asyncio
import types

import pytest
from jupyterhub.spawner import SpawnException

from gemhub.services.quota.client import QuotaError
from gemhub.spawner.local.spawner import LocalGemSpawner
from gemhub.spawner.presets import Catalog
from gemhub.spawner.request import Ref, WorkloadRequest

CATALOG = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "1G"}], "B1")


class Ledger:
    """A scripted quota client: ``answers`` for admit then each poll."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls: list[tuple] = []

    async def admit(self, user, body):
        self.calls.append(("admit", user, body["holder"], body["idempotency_key"]))
        return self._next()

    async def admission(self, ident, user):
        self.calls.append(("get", ident))
        return self._next()

    async def release(self, ident, user, reason="released"):
        self.calls.append(("release", ident, reason))
        return {"id": ident, "state": "released"}

    def _next(self):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self):
        pass


def spawner(tmp_path, ledger: Ledger, saved: dict) -> LocalGemSpawner:
    user = types.SimpleNamespace(name="ann", url="/user/ann/", escaped_name="ann", server=None, id=1, admin=False)
    sp = LocalGemSpawner(state_dir=str(tmp_path), user=user, orm_spawner=None,
                         hub=types.SimpleNamespace(base_url="/hub/", api_url="http://x/hub/api"),
                         quota_client_factory=lambda url, token: ledger, admission_poll_interval=0.01,
                         quota_retry_seconds=5)
    sp._save_state_now = lambda: saved.update(sp.get_state())
    sp.workload = WorkloadRequest("ann", Ref(3, "team"), Ref(4, "default"), CATALOG.get("B1"))
    return sp


def queued(pos, total, ident=9):
    return {"id": ident, "state": "queued", "message": f"waiting for quota: {pos} of {total}", "ledger": "L"}


ADMITTED = {"id": 9, "state": "admitted", "placement": None, "ledger": "L"}


async def test_waits_in_the_queue_showing_its_place_then_is_admitted(tmp_path):
    ledger = Ledger([queued("2nd", 3), queued("1st", 2), ADMITTED])
    saved: dict = {}
    sp = spawner(tmp_path, ledger, saved)
    sp._allow_queue_wait()
    assert sp.start_timeout == 60 + 86400  # JupyterHub waits for the queue too
    messages = []

    async def watch():
        async for e in sp.admission_progress():
            messages.append(e["message"])

    watcher = asyncio.ensure_future(watch())
    entry = await sp.admit()
    await asyncio.wait_for(watcher, 5)
    assert entry["state"] == "admitted" and saved == {"admission_id": 9}  # saved before it ran
    assert messages[:2] == ["waiting for quota: 2nd of 3", "waiting for quota: 1st of 2"]
    assert messages[-1] == "admitted: starting your server"
    assert sp.start_timeout == 60  # the launch keeps the configured timeout
    assert ledger.calls[0][:3] == ("admit", "ann", "server:ann/")
    await sp.run_post_stop_hook()
    assert ledger.calls[-1] == ("release", 9, "the server stopped") and sp.admission_id == 0


async def test_a_refusal_is_a_spawn_exception_with_the_reason(tmp_path):
    sp = spawner(tmp_path, Ledger([QuotaError(400, "this request can never fit: quota 1 device")]), {})
    with pytest.raises(SpawnException) as e:
        await sp.admit()
    assert e.value.status_code == 400 and "can never fit" in e.value.jupyterhub_message


async def test_an_unreachable_quota_service_is_retried_with_the_same_key(tmp_path):
    ledger = Ledger([QuotaError(503, "cannot reach the quota service"), ADMITTED])
    sp = spawner(tmp_path, ledger, {})
    await sp.admit()
    keys = {c[3] for c in ledger.calls if c[0] == "admit"}
    assert len([c for c in ledger.calls if c[0] == "admit"]) == 2 and len(keys) == 1


async def test_a_cancelled_spawn_leaves_the_queue(tmp_path):
    ledger = Ledger([queued("1st", 1)])
    sp = spawner(tmp_path, ledger, {})
    task = asyncio.ensure_future(sp.admit())
    while not any(c[0] == "get" for c in ledger.calls):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ledger.calls[-1] == ("release", 9, "the spawn stopped waiting")


async def test_an_entry_that_ends_while_waiting_is_refused(tmp_path):
    ended = {"id": 9, "state": "cancelled", "end_reason": "reconciliation: the hub has no such server running"}
    sp = spawner(tmp_path, Ledger([queued("1st", 1), ended]), {})
    with pytest.raises(SpawnException, match="left the queue: reconciliation"):
        await sp.admit()


async def test_a_launch_past_its_timeout_says_so_and_leaves_the_ledger(tmp_path):
    ledger = Ledger([ADMITTED])
    sp = spawner(tmp_path, ledger, {})
    sp._launch_timeout = 1  # what _allow_queue_wait keeps of start_timeout

    async def hang():
        await asyncio.sleep(10)

    sp.launch = hang
    with pytest.raises(TimeoutError) as caught:
        await sp.start()
    # the hub shows "Spawn failed: <this>": never an empty reason
    assert str(caught.value).startswith("the server did not start within 1 seconds")
    assert ledger.calls[-1] == ("release", 9, "the server did not start")
