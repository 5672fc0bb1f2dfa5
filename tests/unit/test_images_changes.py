"""Followers of a build's log are woken by its next line or state change, from the build's
worker thread, and leave nothing behind."""

from __future__ import annotations

import asyncio
import threading

from gemhub.services.images.changes import Changes

# a harness limit, not a speed claim: a follower that is never woken fails instead of hanging
NEVER = 60


def test_a_line_from_a_worker_thread_wakes_a_follower():
    async def main():
        changes = Changes()
        with changes.watching(7) as change:
            threading.Thread(target=changes.log_grew, args=(7,)).start()
            await asyncio.wait_for(change.wait(3600), NEVER)
        assert not changes._events and not changes._followers

    asyncio.run(main())


def test_a_state_change_wakes_every_follower_and_other_versions_do_not():
    async def main():
        changes = Changes()
        with changes.watching(1) as a, changes.watching(1) as b, changes.watching(2) as other:
            waits = [asyncio.ensure_future(a.wait(3600)), asyncio.ensure_future(b.wait(3600))]
            elsewhere = asyncio.ensure_future(other.wait(3600))
            await asyncio.sleep(0)
            threading.Thread(target=changes.state_changed, args=(1,)).start()
            await asyncio.wait_for(asyncio.gather(*waits), NEVER)
            assert not elsewhere.done()
            elsewhere.cancel()

    asyncio.run(main())


def test_a_change_between_watching_and_waiting_is_not_missed():
    async def main():
        changes = Changes()
        with changes.watching(3) as change:
            changes.state_changed(3)  # e.g. while the handler reads the log
            await asyncio.sleep(0)
            await asyncio.wait_for(change.wait(3600), NEVER)
            # a follower that starts now waits for the next change
            with changes.watching(3) as later:
                assert not (await _returns_within(later.wait(0.05)))

    asyncio.run(main())


def test_without_news_the_wait_ends_at_its_timeout_and_nobody_following_costs_nothing():
    async def main():
        changes = Changes()
        with changes.watching(4) as change:
            await change.wait(0.05)
        changes.log_grew(4)
        changes.state_changed(5)
        assert not changes._events and not changes._followers

    asyncio.run(main())
    Changes().log_grew(1)  # never watched: no loop, nothing to do


async def _returns_within(awaitable) -> bool:
    """Whether the wait was woken (True) rather than running to its own timeout."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await awaitable
    return loop.time() - start < 0.04
