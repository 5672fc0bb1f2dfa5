"""A spawn's admission by the quota service's ledger (the spawner side, no tornado).

:class:`AdmissionMixin` gives every GemHub spawner the same first step: ask the ledger for an
admission, record its id in the spawner's saved state before anything is launched, wait in
the queue while showing the position (``progress()``), then launch with the placement the
ledger chose. A refusal is a ``SpawnException`` with the ledger's reason; leaving the queue
(a cancelled spawn) and stopping release the entry.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from jupyterhub.spawner import SpawnException
from jupyterhub.utils import maybe_future
from traitlets import Float, Integer
from traitlets.config import Configurable

# Tests only: while this file exists, a spawn waits after its server is up and before
# start() returns (the hub writes the spawner's state only then), so a test can crash
# the hub in between.
PAUSE_ENV = "GEMHUB_TEST_SPAWN_PAUSE"
LABEL_ENV = "GEMHUB_ADMISSION"  # the workload's label: "<ledger id>.<admission id>"


def server_holder(user: str, server: str) -> str:
    """The ledger's name for a user's server (one open entry per holder)."""
    return f"server:{user}/{server}"


def admission_body(workload, holder: str, key: str) -> dict[str, Any]:
    """The POST body of a notebook's admission (the custom spec only when it is one)."""
    body: dict[str, Any] = {
        "workspace_id": workload.workspace.id, "project_id": workload.project.id, "kind": "notebook",
        "preset": workload.preset.name, "holder": holder, "idempotency_key": key, "replace": True,
    }
    accel = workload.accelerator
    if accel is not None and accel != workload.preset.request:
        from gemhub.spawner.accelerators import format as format_spec

        body["spec"] = format_spec(accel)
    return body


def refusal(status: int, message: str) -> SpawnException:
    """A ledger refusal as JupyterHub shows it (no traceback, the reason to the user)."""
    e = SpawnException(message, reason="quota", status_code=status if 400 <= status < 500 else 503)
    e.jupyterhub_message = message
    return e


def label(admission: dict | None) -> str:
    if not admission or not admission.get("ledger"):
        return ""
    return f"{admission['ledger']}.{admission['id']}"


class AdmissionMixin(Configurable):
    queue_timeout = Integer(
        86400, help="Seconds a spawn may wait in the quota or device queue before it gives up "
        "(added to start_timeout while it waits; the launch itself keeps start_timeout).",
    ).tag(config=True)
    admission_poll_interval = Float(
        1.0, help="Seconds between two looks at a queued admission (its position on the spawn page).",
    ).tag(config=True)
    quota_retry_seconds = Float(
        60.0, help="How long a spawn retries when the quota service cannot be reached "
        "(the same idempotency key: a retried admission is never booked twice).",
    ).tag(config=True)

    admission: dict | None = None      # the ledger entry (its id is in the saved state)
    admission_id = Integer(0, help="Id of the server's ledger entry (state: survives hub restarts).")
    _launch_timeout: float | None = None
    _queue_message = ""

    # -- the start_timeout covers the queue wait ----------------------------------------
    def _allow_queue_wait(self) -> None:
        """JupyterHub reads start_timeout once, before start(): while a spawn may wait in
        the queue it is queue_timeout longer; the launch is held to the configured value."""
        if self._launch_timeout is None:
            self._launch_timeout = self.start_timeout
        self.start_timeout = self._launch_timeout + self.queue_timeout

    @property
    def launch_timeout(self) -> float:
        return self._launch_timeout if self._launch_timeout is not None else self.start_timeout

    # -- admission -----------------------------------------------------------------------
    def _save_state_now(self) -> None:
        """Write the spawner's state to the hub's database now (JupyterHub itself writes it
        only after start() returns): a crash after this leaves an entry the hub can release."""
        if self.orm_spawner is None:
            return
        from sqlalchemy import inspect

        self.orm_spawner.state = self.get_state()
        session = inspect(self.orm_spawner).session
        if session is not None:
            session.commit()

    async def _ledger(self, call):
        """``call(client)`` with retries while the quota service cannot answer (503)."""
        from gemhub.services.quota.client import QuotaError

        deadline = time.monotonic() + self.quota_retry_seconds
        delay = 0.2
        while True:
            client = self._quota()
            try:
                return await call(client)
            except QuotaError as e:
                if e.status < 500 or time.monotonic() > deadline:
                    raise refusal(e.status, e.message if e.status < 500 else
                                  f"the quota service is unavailable right now ({e.message})") from None
                self.log.warning("quota service for %s: %s; retrying", self._log_name, e.message)
            finally:
                await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)

    async def admit(self) -> dict | None:
        """Ask for the admission, record its id, wait in the queue. Returns the admitted
        entry (None when no ledger is configured)."""
        self._admitted = asyncio.Event()
        self._queue_news = asyncio.Event()
        self._told, self._queue_message = [], ""
        client = self._quota()
        has_ledger = hasattr(client, "admit")
        await _close(client)
        if not has_ledger:
            self.admission = None
            self._admitted.set()
            return None
        holder = server_holder(self.user.name, self.name)
        body = admission_body(self.workload, holder, f"{holder}#{uuid.uuid4().hex}")
        entry = await self._ledger(lambda q: q.admit(self.user.name, body))
        self.admission, self.admission_id = entry, entry["id"]
        self._save_state_now()
        deadline = time.monotonic() + self.queue_timeout
        try:
            while entry["state"] == "queued":
                self._tell(entry.get("message") or "waiting in the queue")
                if time.monotonic() > deadline:
                    raise refusal(503, f"gave up after waiting {self.queue_timeout} s: {self._queue_message}")
                await asyncio.sleep(self.admission_poll_interval)
                entry = await self._ledger(lambda q: q.admission(self.admission_id, self.user.name))
                self.admission = entry
        except BaseException:
            await self.leave_ledger("the spawn stopped waiting")
            raise
        if entry["state"] != "admitted":
            self.admission_id = 0
            raise refusal(409, f"your request left the queue: {entry.get('end_reason') or entry['state']}")
        self.log.info("%s admitted (ledger entry %s)%s", self._log_name, entry["id"],
                      f" on {', '.join(entry['placement']['device_ids'])}" if entry.get("placement") else "")
        self.start_timeout = self.launch_timeout
        self._admitted.set()
        self._queue_news.set()
        return entry

    def _tell(self, message: str) -> None:
        if message != self._queue_message:
            self._queue_message = message
            self._told = [*getattr(self, "_told", []), message]
            self._queue_news.set()

    async def leave_ledger(self, reason: str) -> None:
        """Release the server's entry (or leave the queue); idempotent, never raises."""
        ident, self.admission_id = self.admission_id, 0
        if not ident:
            return
        client = self._quota()
        try:
            if hasattr(client, "release"):
                await client.release(ident, self.user.name, reason)
        except Exception as e:  # reconciliation closes it within one cycle
            self.log.warning("could not release ledger entry %s of %s: %s", ident, self._log_name, e)
        finally:
            await _close(client)

    async def admission_progress(self):
        """The queue's events for progress(): each change of position while waiting, then
        "admitted"."""
        while getattr(self, "_admitted", None) is None:  # progress() may be asked first
            await asyncio.sleep(0.05)
        sent = 0
        while True:
            told = getattr(self, "_told", [])
            for message in told[sent:]:
                yield {"progress": 10, "message": message}
            sent = len(told)
            if self._admitted.is_set():
                break
            self._queue_news.clear()
            if len(getattr(self, "_told", [])) == sent and not self._admitted.is_set():
                await self._queue_news.wait()
        entry = self.admission
        if entry is not None:
            devices = ", ".join((entry.get("placement") or {}).get("device_ids") or ())
            yield {"progress": 30, "message": f"admitted{f' on {devices}' if devices else ''}: starting your server"}

    async def pause_for_tests(self) -> None:
        path = os.environ.get(PAUSE_ENV)
        if path and os.path.exists(path):
            open(path + ".reached", "w").close()
            while os.path.exists(path):
                await asyncio.sleep(0.05)

    # -- state ---------------------------------------------------------------------------
    def load_state(self, state):
        super().load_state(state)
        self.admission_id = int(state.get("admission_id") or 0)

    def get_state(self):
        state = super().get_state()
        if self.admission_id:
            state["admission_id"] = self.admission_id
        return state

    def clear_state(self):
        # admission_id stays until run_post_stop_hook has released it: JupyterHub (and the
        # local spawner's stop) clear the state before that hook runs
        super().clear_state()
        self.admission = None

    async def run_post_stop_hook(self):
        await self.leave_ledger("the server stopped")
        return await maybe_future(super().run_post_stop_hook())


async def _close(client) -> None:
    close = getattr(client, "aclose", None) or getattr(client, "close", None)
    if close is not None:
        r = close()
        if asyncio.iscoroutine(r):
            await r
