"""Wakes the clients that follow a build (the log's long poll, ``?wait=``) when its log
grows or its state changes, instead of each client asking every second.

Lives in the service's event loop; the builds' worker threads signal through
:meth:`Changes.log_grew` and :meth:`Changes.state_changed`, which are safe to call from
any thread and cost a dictionary lookup while nobody follows the version.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

# after new log text, how long a follower waits for the state to change too (the build's
# last lines come a few ms before its "succeeded"): one answer instead of two, and a
# chatty build answers a follower at most about this often
SETTLE_S = 0.1


class Change:
    """What one follower waits for: its version's next log line or state change."""

    def __init__(self, log: asyncio.Event, state: asyncio.Event):
        self._log, self._state = log, state

    async def wait(self, timeout: float) -> None:
        """Until the state changes, or the log grows (then up to SETTLE_S more for the
        state), or ``timeout`` seconds."""
        log = asyncio.ensure_future(self._log.wait())
        state = asyncio.ensure_future(self._state.wait())
        try:
            done, _ = await asyncio.wait({log, state}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if log in done and state not in done:
                await asyncio.wait({state}, timeout=SETTLE_S)
        finally:
            log.cancel()
            state.cancel()


class Changes:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[tuple[int, str], asyncio.Event] = {}
        self._followers: Counter[int] = Counter()

    @contextmanager
    def watching(self, version_id: int) -> Iterator[Change]:
        """Follow a version (in the event loop): changes from now on wake the Change. Enter
        before reading the log and the state, so that nothing written in between is missed."""
        self._loop = asyncio.get_running_loop()
        self._followers[version_id] += 1
        try:
            yield Change(self._event(version_id, "log"), self._event(version_id, "state"))
        finally:
            self._followers[version_id] -= 1
            if self._followers[version_id] <= 0:
                del self._followers[version_id]
                self._events.pop((version_id, "log"), None)
                self._events.pop((version_id, "state"), None)

    def log_grew(self, version_id: int) -> None:
        self._signal(version_id, "log")

    def state_changed(self, version_id: int) -> None:
        self._signal(version_id, "state")

    def _event(self, version_id: int, kind: str) -> asyncio.Event:
        return self._events.setdefault((version_id, kind), asyncio.Event())

    def _signal(self, version_id: int, kind: str) -> None:
        loop = self._loop
        if loop is None or (version_id, kind) not in self._events:
            return
        try:
            loop.call_soon_threadsafe(self._fire, version_id, kind)
        except RuntimeError:  # the loop is closed: the service is stopping, nobody waits
            pass

    def _fire(self, version_id: int, kind: str) -> None:
        # the fired event goes: followers that start watching later wait for the next change
        event = self._events.pop((version_id, kind), None)
        if event is not None:
            event.set()
