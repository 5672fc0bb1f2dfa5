"""Bounded caches for what the services remember per user: a burst of new users (or a long
uptime) must not grow a service without limit. cachetools does the bookkeeping."""

from __future__ import annotations

from cachetools import LRUCache, TTLCache

#: users a service remembers having seen (least recently seen forgotten first)
SEEN_USERS = 10_000
#: entries of a short-lived per-user cache
PER_USER_ENTRIES = 4_096


class SeenNames(LRUCache):
    """A set of names that forgets the least recently seen beyond ``maxsize``: for work
    done once per user that is harmless to repeat (making the personal workspace)."""

    def __init__(self, maxsize: int = SEEN_USERS):
        super().__init__(maxsize)

    def add(self, name: str) -> None:
        self[name] = True


def per_user_ttl(ttl: float, maxsize: int = PER_USER_ENTRIES) -> TTLCache:
    """A per-user cache whose entries expire after ``ttl`` seconds, at most ``maxsize`` of them."""
    return TTLCache(maxsize=maxsize, ttl=ttl)
