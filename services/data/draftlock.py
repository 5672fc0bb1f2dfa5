"""One lock per dataset/model over its draft (pure: no tornado, no database).

Every operation that changes an asset's draft holds it: publishing, discarding, deleting
the asset and starting a new version hold it alone (``exclusive``); changes that may run
side by side (uploads landing, extractions, file operations, an SFTP session's end) share
it. A request that finds the lock taken the other way is refused at once with 409 (it is
never queued): a discard during a publish is refused, so a publish never loses its draft
half-way and a discard never leaves a half-published folder.

The data service is one process, so the lock lives in memory; SFTP sessions (another
process) are kept out by the draft's flock (files.no_sftp_sessions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gemhub.services.common.errors import Conflict


class DraftLocks:
    def __init__(self) -> None:
        self._held: dict[int, dict] = {}

    @contextlib.contextmanager
    def hold(self, asset_id: int, what: str, exclusive: bool = False) -> Iterator[None]:
        """Hold asset ``asset_id``'s draft while ``what`` happens (409 when it cannot)."""
        entry = self._held.setdefault(asset_id, {"exclusive": None, "shared": 0})
        if entry["exclusive"] or (exclusive and entry["shared"]):
            doing = entry["exclusive"] or "being changed"
            if not entry["exclusive"] and not entry["shared"]:
                self._held.pop(asset_id, None)
            raise Conflict(f"its draft is busy ({doing}); try again when that is done")
        if exclusive:
            entry["exclusive"] = what
        else:
            entry["shared"] += 1
        try:
            yield
        finally:
            if exclusive:
                entry["exclusive"] = None
            else:
                entry["shared"] -= 1
            if not entry["exclusive"] and not entry["shared"]:
                self._held.pop(asset_id, None)

    def busy(self, asset_id: int) -> bool:
        return asset_id in self._held
