"""Typed async client of the image service (used by the spawner: the spawn form's images
and the resolution of the chosen image for a user)."""

from __future__ import annotations

from gemhub.services.common.client import ServiceClient, ServiceError


class ImagesError(ServiceError):
    """A refusal (or failure) of the image service: HTTP ``status`` and its ``message``."""


class ImagesClient(ServiceClient):
    """``ImagesClient(base_url, token)``: base_url ends with …/services/images/; with the
    service's own token, calls act for the ``user`` they name."""

    service = "images"
    error = ImagesError

    async def usable(self, user: str) -> list[dict]:
        """Images the user can start (a built version), with versions."""
        return await self._all_pages("images", {"user": user, "usable": "1"})

    async def resolve(self, user: str, image: object, workspace_id: int | None = None) -> dict:
        """{id, name, version, version_id, rootfs, reference, env} of the chosen image, or
        an ImagesError saying why the user may not start it."""
        return await self._call("POST", "resolve", {"user": user}, {"image": image, "workspace_id": workspace_id})

    async def builds(self, user: str, state: str = "active", offset: int = 0, limit: int = 50) -> dict:
        """A page of every workspace's builds (hub admins; the admin console)."""
        return await self._call("GET", "builds", {"user": user, "state": state, "offset": offset, "limit": limit})

    async def official(self, user: str) -> list[dict]:
        return await self._all_pages("images", {"user": user, "kind": "official"})

    async def rebuild(self, user: str, image_id: int) -> dict:
        """A new version of an official image from its recipe (hub admins)."""
        return await self._call("POST", f"images/{int(image_id)}/versions", {"user": user}, {})

    async def cancel(self, user: str, image_id: int, number: int) -> dict:
        return await self._call("POST", f"images/{int(image_id)}/versions/{int(number)}/cancel", {"user": user})
