"""The spawner's side of images: ask the image service which built version a user may
start (shared by the local and Kubernetes spawners).

``image`` in user_options names a version (see gemhub.spawner.request); none means the
configured default image (``images.default``), and ``host`` the host's own OS, offered as
a labelled fallback where ``images.allow_host`` is true. The service answers ids; where
the version's files are is the layout's business (gemhub.spawner.layout), never the answer's.
"""

from __future__ import annotations

import logging
from typing import Mapping

from gemhub.spawner.request import HOST_IMAGE, ImageChoice, RequestError, RequestedOptions

log = logging.getLogger(__name__)


class ImagesUnavailable(Exception):
    """The image service could not answer (5xx or unreachable)."""


def wanted(requested: RequestedOptions, default: str, allow_host: bool) -> dict | str:
    """The choice to resolve: the request's, else the default; HOST_IMAGE for the host."""
    choice = requested.image if requested.image is not None else (HOST_IMAGE if default == HOST_IMAGE
                                                                  else {"name": default})
    if choice == HOST_IMAGE and not allow_host:
        raise RequestError("the host's own OS is not offered here: choose an image")
    return choice


async def resolve(url: str, token: str, user: str, requested: RequestedOptions, default: str,
                  allow_host: bool, workspace_id: int | None) -> ImageChoice | None:
    """The version to run on, or None for the host's OS."""
    choice = wanted(requested, default, allow_host)
    if choice == HOST_IMAGE:
        return None
    if not url:
        if requested.image is None and allow_host:
            return None  # no image service configured: the fallback is all there is
        raise RequestError("images cannot be chosen: no image service is configured")
    from gemhub.services.images.client import ImagesClient, ImagesError

    async with ImagesClient(url, token) as client:
        try:
            answer = await client.resolve(user, choice, workspace_id)
        except ImagesError as e:
            if 400 <= e.status < 500:
                raise RequestError(e.message) from None
            raise ImagesUnavailable(e.message) from None
    try:
        return ImageChoice(id=answer["id"], version=answer["version"], version_id=answer["version_id"],
                           name=str(answer.get("name", "")), workspace_id=answer.get("workspace_id"),
                           reference=str(answer.get("reference") or ""),
                           env=tuple(str(e) for e in answer.get("env") or ()))
    except (KeyError, TypeError) as e:
        raise ImagesUnavailable(f"unexpected answer from the image service: {e}") from None


async def usable(url: str, token: str, user: str) -> list[Mapping]:
    """What the spawn form offers (empty, with a log line, when the image service is down)."""
    if not url:
        return []
    from gemhub.services.images.client import ImagesClient, ImagesError

    async with ImagesClient(url, token) as client:
        try:
            return await client.usable(user)
        except ImagesError as e:
            log.warning("cannot list images of %s: %s", user, e.message)
            return []
