"""When a freshly started local server is ready: it accepts connections on its port.

LocalGemSpawner waits for this in ``start()`` (polling from every :data:`POLL_SECONDS`, backing
off to :data:`MAX_POLL_SECONDS`: thirty servers starting at once must not keep the hub's event
loop busy with hundreds of refused connections a second), so the hub's own readiness check
succeeds at once instead of backing off. The spawn benchmark gives its baseline spawner the
same wait, so both are measured the same way.
"""

from __future__ import annotations

import asyncio
from typing import Callable

POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 0.5


async def until_listening(port: int, exited: Callable[[], int | None], host: str = "127.0.0.1",
                          poll: float = POLL_SECONDS) -> int | None:
    """Return None once ``host:port`` accepts a connection, or the exit status ``exited()``
    reports when the process ended first."""
    while True:
        rc = exited()
        if rc is not None:
            return rc
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(poll)
            poll = min(poll * 1.5, MAX_POLL_SECONDS)
            continue
        writer.close()
        return None
