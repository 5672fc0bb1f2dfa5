"""The admin console's Images tab (gemhub.hub_config.console's extension point): the build
queue of every workspace, recent builds, and the official catalog with a rebuild button.
Everything goes through the image service's REST API, acting for the admin."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping

from gemhub.hub_config.console.tabs import ConsoleContext, ConsoleError, ConsoleTab, Form
from gemhub.services.common import params
from gemhub.services.common.errors import BadRequest

from .client import ImagesClient, ImagesError


def _error(e: ImagesError) -> ConsoleError:
    return ConsoleError(e.status if 400 <= e.status < 500 else 503, e.message)


class ImagesTab(ConsoleTab):
    name = "images"
    title = "Images"
    order = 40
    searchable = False
    templates_dir = Path(__file__).resolve().parent / "templates"
    template = "console-images.html"

    def client(self, ctx: ConsoleContext) -> ImagesClient:
        endpoint = ctx.service("images")
        return ImagesClient(endpoint.base_url, endpoint.token)

    async def view(self, ctx: ConsoleContext) -> Mapping[str, Any]:
        try:
            async with self.client(ctx) as images:
                active, recent, official = await asyncio.gather(
                    images.builds(ctx.admin, "active", 0, 100),
                    images.builds(ctx.admin, "recent", ctx.query.offset, ctx.query.limit),
                    images.official(ctx.admin))
        except ImagesError as e:
            raise _error(e) from None
        return {"active": active["items"], "recent": recent["items"], "total": recent["_pagination"]["total"],
                "official": official, "page": ctx.service_page("images")}

    async def act(self, ctx: ConsoleContext, form: Form) -> str:
        action = form.get("action")
        if action not in ("rebuild", "cancel"):
            return await super().act(ctx, form)
        try:
            image_id = params.id_arg(form.get("image"), "image id")
            number = params.id_arg(form.get("version"), "version") if action == "cancel" else None
        except BadRequest as e:
            raise ConsoleError(400, e.message) from None
        try:
            async with self.client(ctx) as images:
                if action == "rebuild":
                    v = await images.rebuild(ctx.admin, image_id)
                    return f"Queued version {v['number']} of official image {image_id}"
                await images.cancel(ctx.admin, image_id, number)
                return f"Cancelled version {number} of image {image_id}"
        except ImagesError as e:
            raise _error(e) from None
