"""The spawner's side of dataset/model mounts: ask the data service what a user may mount.

Shared by the local and Kubernetes spawners: choices come from ``user_options``
(``datasets``/``models``), the data service resolves each for *this user* (a choice they
cannot see is refused with its message), and :func:`gemhub.spawner.request.assign_slots`
puts them at /gemini/data-1..3 and /gemini/pretrain1..3.
"""

from __future__ import annotations

import logging
from typing import Mapping

from gemhub.spawner.request import DatasetMount, RequestError, RequestedOptions, assign_slots

log = logging.getLogger(__name__)


class MountsUnavailable(Exception):
    """The data service could not answer (5xx or unreachable)."""


async def resolve(url: str, token: str, user: str, requested: RequestedOptions,
                  workspace_id: int | None) -> tuple[DatasetMount, ...]:
    if not requested.datasets and not requested.models:
        return ()
    if not url:
        raise RequestError("datasets and models cannot be mounted: no data service is configured")
    from gemhub.services.data.client import DataClient, DataError

    async with DataClient(url, token) as client:
        try:
            resolved = await client.resolve_mounts(user, list(requested.datasets), list(requested.models),
                                                   workspace_id)
        except DataError as e:
            if 400 <= e.status < 500:
                raise RequestError(e.message) from None
            raise MountsUnavailable(e.message) from None
    return assign_slots(resolved)


async def mountable(url: str, token: str, user: str) -> list[Mapping]:
    """What the spawn form offers (empty, with a log line, when the data service is down)."""
    if not url:
        return []
    from gemhub.services.data.client import DataClient, DataError

    async with DataClient(url, token) as client:
        try:
            return await client.mountable(user)
        except DataError as e:
            log.warning("cannot list datasets/models of %s: %s", user, e.message)
            return []
