"""HTTP adapters of the image service (thin: rules live in library.py, policy.py,
context.py; builds in builds.py).

Every handler first gathers what it needs from other services (the caller's workspaces
from the quota service, hub-admin rights and running servers from the hub), then does
its database work in one thread call with its own session: no session is held across an
``await`` and the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from typing import Any, Callable

from gemhub.services.common import params
from gemhub.services.common.audit import audit_event
from gemhub.services.common.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable
from gemhub.services.common.handlers import APIHandler, PageHandler
from gemhub.services.quota.client import QuotaClient, QuotaError
from gemhub.spawner import layout

from . import builds, context, names, policy
from .library import ACTIVE, Library, version_json
from .models import Image, ImageVersion
from .runner import Job
from .build import push
from .storage import local_reference, registry_reference

MEMBERSHIP_TTL = 5.0
ADMIN_TTL = 10.0
MAX_BODY = 256 * 1024
MAX_LOG_CHUNK = 256 * 1024
MAX_LOG_WAIT = 30  # seconds a log request may wait for news (?wait=)


def whole(value: str, what: str) -> int:
    """An image id or version number from the path (the platform's one parser)."""
    return params.id_arg(value, f"{what} id" if what == "image" else what)


class ImagesMixin:
    async def my_workspaces(self) -> list[dict]:
        actor = self.acting_user()
        cache = self.settings["membership_cache"]
        hit = cache.get(actor)
        if hit is not None and time.monotonic() - hit[0] < MEMBERSHIP_TTL:
            return hit[1]
        client = QuotaClient(self.settings["quota_url"], self.settings["quota_token"])
        try:
            workspaces = await client.list_workspaces(user=actor)
        except QuotaError as e:
            if e.status >= 500:
                raise Unavailable(f"the workspace service is unavailable: {e.message}") from None
            refusal = {401: Unauthorized, 403: Forbidden, 404: NotFound}.get(e.status, BadRequest)
            raise refusal(e.message) from None
        finally:
            await client.aclose()
        cache[actor] = (time.monotonic(), workspaces)
        return workspaces

    async def hub_admin(self) -> bool:
        actor = self.acting_user()
        cache = self.settings["admin_cache"]
        hit = cache.get(actor)
        if hit is not None and time.monotonic() - hit[0] < ADMIN_TTL:
            return hit[1]
        admin = await self.settings["hub_api"].is_admin(actor)
        cache[actor] = (time.monotonic(), admin)
        return admin

    async def in_thread(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))

    async def with_library(self, fn: Callable[[Library], Any]) -> Any:
        """``fn(library)`` in the database's worker threads, with a session of its own
        (the caller's workspaces and rights are fetched first, never with a session open)."""
        workspaces = await self.my_workspaces()
        admin = await self.hub_admin()
        actor = self.acting_user()
        return await self.run_db(lambda session: fn(Library(session, actor, workspaces, admin)))

    async def in_use(self) -> set[tuple[int, int]]:
        """(image id, version) of every running environment (the hub's servers)."""
        out = set()
        for s in await self.settings["hub_api"].running_servers():
            chosen = (s.get("user_options") or {}).get("image")
            if isinstance(chosen, dict) and isinstance(chosen.get("id"), int) and isinstance(chosen.get("version"), int):
                out.add((chosen["id"], chosen["version"]))
        return out


class ImagesAPIHandler(ImagesMixin, APIHandler):
    def small_body(self) -> dict:
        size = len(self.body())
        if size > MAX_BODY:
            raise BadRequest(f"the request body is {size} bytes long (at most {MAX_BODY})")
        return self.json_body()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, policy.DockerfileRefused):
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json")
            self.finish(exc.to_json())
            return
        super().write_error(status_code, **kwargs)


class ImagesAPI(ImagesAPIHandler):
    async def get(self):
        offset, limit = self.page_args()
        usable = (self.get_query_argument("usable", "") or "").lower() in ("1", "true", "yes")
        workspace = self.get_query_argument("workspace", None) or None
        kind = self.get_query_argument("kind", None) or None

        def work(lib: Library):
            items = lib.visible(workspace, usable, kind)
            return [lib.image_json(i, with_versions=usable) for i in items[offset:offset + limit]], len(items)

        page, total = await self.with_library(work)
        self.write_json(self.paginated(page, offset, limit, total))

    async def post(self):
        body = self.small_body()
        self.write_json(await self.with_library(lambda lib: lib.image_json(lib.create(body))), 201)


class ImageAPI(ImagesAPIHandler):
    async def get(self, image_id):
        iid = whole(image_id, "image")
        self.write_json(await self.with_library(lambda lib: lib.image_json(lib.get(iid), with_versions=True)))

    async def patch(self, image_id):
        iid, body = whole(image_id, "image"), self.small_body()
        self.write_json(await self.with_library(lambda lib: lib.image_json(lib.update(iid, body), True)))

    async def delete(self, image_id):
        iid = whole(image_id, "image")
        in_use = await self.in_use()
        store = self.settings["store"]

        def work(lib: Library):
            image = lib.get(iid, "manage")
            if image.kind == "official":
                raise BadRequest("official images come from the catalog (images/); they are not deleted here")
            lib.check_unused(image, list(image.versions), {v.id for v in image.versions
                                                            if (image.id, v.number) in in_use})
            gone = [builds.VersionFiles.of(image, v) for v in image.versions]
            audit_event(lib.db, lib.actor, "image.delete", f"image:{image.id}", name=image.name)
            lib.db.delete(image)
            lib.db.commit()
            return gone

        gone = await self.with_library(work)
        # root filesystems and storage tags go once the rows are gone (files never outlive rows' checks)
        await self.in_thread(builds.remove_files, store, gone, f"delete-{iid}")
        self.set_status(204)
        self.finish()


class VersionsAPI(ImagesAPIHandler):
    async def get(self, image_id):
        iid = whole(image_id, "image")
        items = await self.with_library(lambda lib: lib.image_json(lib.get(iid), True)["versions"])
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))

    async def post(self, image_id):
        """Build a new version: {"dockerfile", "base": choice, "project": name or id, "note"}
        for a custom image; {} (a hub admin) rebuilds an official image from its recipe."""
        iid, body = whole(image_id, "image"), self.small_body()
        unknown = sorted(set(body) - {"dockerfile", "base", "project", "note"})
        if unknown:
            raise BadRequest(f"unknown key(s) {', '.join(unknown)} (known: dockerfile, base, project, note)")
        note = names.check_description(body.get("note"))
        image = await self.with_library(lambda lib: lib.image_json(lib.get(iid, "edit")))
        if image["kind"] == "official":
            if set(body) - {"note"}:
                raise BadRequest("an official image is built from its recipe in images/; send only a note")
            if image["cluster_only"]:
                raise Conflict(f"{image['name']!r} is a cluster build: its base layers cannot be fetched here")
            v = await self.with_library(lambda lib: self._queue_official(lib, iid, note))
        else:
            v = await self._queue_custom(iid, image, body, note)
        self.settings["queue"].wake()
        self.write_json(v, 202)

    def _queue_official(self, lib: Library, iid: int, note: str) -> dict:
        image = lib.get(iid, "edit")
        entry = self.settings["catalog"].get(image.official_key)
        if entry is None:
            raise Conflict(f"{image.name!r} is no longer in the catalog")
        v = lib.add_version(image, recipe=entry.recipe, note=note or f"recipe {entry.recipe[:16]}")
        Job(self.settings["store"].log(v.id), 1).say(f"[gemhub] queued by {lib.actor}")
        return version_json(v)

    async def _queue_custom(self, iid: int, image: dict, body: dict, note: str) -> dict:
        if "dockerfile" not in body:
            raise BadRequest("dockerfile is required: the instructions after the base image's FROM")
        base_choice = names.parse_choice(body.get("base") if body.get("base") is not None else "base", "base")
        # the policy first: a refused Dockerfile changes nothing
        base_ref = await self.with_library(
            lambda lib: local_reference(*_image_version_ids(lib.pick(base_choice, image["workspace_id"]))))
        checked = policy.check(body["dockerfile"], base_ref)
        project = None
        if checked.sources:
            project = await self._project(image["workspace_id"], body.get("project"))
        elif body.get("project") is not None:
            project = await self._project(image["workspace_id"], body.get("project"))
        store = self.settings["store"]

        def work(lib: Library) -> dict:
            img = lib.get(iid, "edit")
            _, base_version = lib.pick(base_choice, img.workspace_id)
            v = lib.add_version(img, state="preparing" if checked.sources else "queued",
                                dockerfile=checked.user_text, base_version_id=base_version.id,
                                context_project_id=project["id"] if project else None,
                                hints=[h.to_json() for h in checked.hints], note=note)
            return {"id": v.id, "number": v.number}

        created = await self.with_library(work)
        try:
            if checked.sources:
                code, _ = layout.project_dirs(self.settings["state_dir"], image["workspace_id"], project["id"])
                await self.in_thread(context.assemble, code, checked.sources, store.context(created["id"]),
                                     self.settings["context_limits"])
        except context.ContextError:
            await self.with_library(lambda lib: _drop_version(lib, created["id"]))
            self.settings["queue"].changes.state_changed(created["id"])
            raise
        Job(store.log(created["id"]), 1).say(f"[gemhub] queued by {self.acting_user()}"
                                             + (f" with {len(checked.sources)} source(s) from project"
                                                f" {project['name']!r}" if project else ""))
        if checked.sources:
            await self.with_library(lambda lib: _queue_prepared(lib, created["id"]))
            # whoever follows the log (another tab, the CLI) learns it is queued now, not
            # only when a build slot takes it
            self.settings["queue"].changes.state_changed(created["id"])
        return await self.with_library(lambda lib: version_json(lib.version(lib.get(iid), created["number"])))

    async def _project(self, workspace_id: int, ref: object) -> dict:
        """A project of the image's workspace, whose code folder is the build context."""
        if ref is None or (isinstance(ref, str) and not ref.strip()):
            raise BadRequest("COPY/ADD take files from a project's code folder: name the project")
        if not isinstance(ref, (str, int)) or isinstance(ref, bool):
            raise BadRequest(f"project must be a name or an id, not {ref!r}")
        # a number is an id, a text a name (a project named like an id is no alias)
        by_id = isinstance(ref, int)
        client = QuotaClient(self.settings["quota_url"], self.settings["quota_token"])
        try:
            resolved = await client.resolve(
                self.acting_user(), workspace_id=workspace_id,
                project_id=int(ref) if by_id else None, project=None if by_id else ref.strip())
        except QuotaError as e:
            raise (Unavailable if e.status >= 500 else BadRequest)(e.message) from None
        finally:
            await client.aclose()
        return resolved["project"]


def _image_version_ids(picked) -> tuple[int, int]:
    image, v = picked
    return image.id, v.number


def _drop_version(lib: Library, vid: int) -> None:
    """A version whose sources were refused: as if it had never been asked for."""
    v = lib.db.get(ImageVersion, vid)
    if v is not None and v.state == "preparing":
        lib.db.delete(v)
        lib.db.commit()


def _queue_prepared(lib: Library, vid: int) -> None:
    v = lib.db.get(ImageVersion, vid)
    if v is not None and v.state == "preparing":
        v.state = "queued"
        lib.db.commit()


class VersionAPI(ImagesAPIHandler):
    async def get(self, image_id, number):
        iid, n = whole(image_id, "image"), whole(number, "version")

        def work(lib: Library):
            image = lib.get(iid)
            return lib.image_json(image, True)["versions"][image.versions.index(lib.version(image, n))]

        self.write_json(await self.with_library(work))

    async def delete(self, image_id, number):
        iid, n = whole(image_id, "image"), whole(number, "version")
        in_use = await self.in_use()
        store = self.settings["store"]

        def work(lib: Library):
            image = lib.get(iid, "manage")
            v = lib.version(image, n)
            lib.check_unused(image, [v], {v.id} if (image.id, v.number) in in_use else set())
            gone = [builds.VersionFiles.of(image, v)]
            audit_event(lib.db, lib.actor, "image.version.delete", f"image:{image.id}", version=n)
            lib.db.delete(v)
            lib.db.commit()
            return gone

        gone = await self.with_library(work)
        await self.in_thread(builds.remove_files, store, gone, f"delete-{iid}")
        self.set_status(204)
        self.finish()


class CancelAPI(ImagesAPIHandler):
    async def post(self, image_id, number):
        iid, n = whole(image_id, "image"), whole(number, "version")

        admin = await self.hub_admin()

        def work(lib: Library):
            image = lib.db.get(Image, iid) if admin else None  # hub admins stop any build
            image = image or lib.get(iid, "edit")
            v = lib.version(image, n)
            if v.state not in ACTIVE:
                raise Conflict(f"version {n} is {v.state}; only queued or building versions can be cancelled")
            if v.state in ("preparing", "queued"):
                v.state, v.error = "cancelled", f"cancelled by {lib.actor}"
                Job(self.settings["store"].log(v.id), 1).say(f"[gemhub] cancelled by {lib.actor}")
            audit_event(lib.db, lib.actor, "image.cancel", f"image:{image.id}", version=n)
            lib.db.commit()
            return v.id, v.state

        vid, state = await self.with_library(work)
        if state == "building":
            self.settings["queue"].cancel(vid)
        else:
            self.settings["queue"].changes.state_changed(vid)
        self.write_json({"number": n, "state": "cancelling" if state == "building" else "cancelled"})


class LogAPI(ImagesAPIHandler):
    """The build log from ``?offset=`` (bytes): {text, offset, state, done}. With
    ``?wait=<seconds>`` (at most MAX_LOG_WAIT) a running build's answer waits until there is
    new text or the state changes (a long poll: the page and ``gemhub image logs --follow``
    ask again at once, and see the end of a build as it happens)."""

    async def get(self, image_id, number):
        iid, n = whole(image_id, "image"), whole(number, "version")
        offset = params.optional(self.get_query_argument("offset", None), "offset") or 0
        wait = params.whole(self.get_query_argument("wait", "0"), "wait", 0, MAX_LOG_WAIT)

        def work(lib: Library):
            v = lib.version(lib.get(iid), n)
            return v.id, v.state

        vid, state = await self.with_library(work)
        path = self.settings["store"].log(vid)

        def read() -> tuple[bytes, int]:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read(MAX_LOG_CHUNK), os.fstat(f.fileno()).st_size
            except FileNotFoundError:
                return b"", 0

        if wait and state in ACTIVE:
            with self.settings["queue"].changes.watching(vid) as change:
                # read again once watching: what changed in between wakes the wait below
                vid, state = await self.with_library(work)
                data, size = await self.in_thread(read)
                if not data and state in ACTIVE:
                    await change.wait(wait)
                    vid, state = await self.with_library(work)
                    data, size = await self.in_thread(read)
        else:
            data, size = await self.in_thread(read)
        end = offset + len(data)
        self.write_json({"text": data.decode("utf-8", "replace"), "offset": end, "state": state,
                         "done": state not in ACTIVE and end >= size})


class PushAPI(ImagesAPIHandler):
    """Push a built version to the registry again (after a failed push)."""

    async def post(self, image_id, number):
        iid, n = whole(image_id, "image"), whole(number, "version")
        registry = self.settings["registry"]
        if not registry["url"]:
            raise Conflict("no registry is configured (images.registry in gemhub.yaml)")
        store = self.settings["store"]

        def check(lib: Library) -> int:
            v = lib.version(lib.get(iid, "edit"), n)
            if v.state != "succeeded":
                raise Conflict(f"version {n} is {v.state}; only built versions are pushed")
            return v.id

        vid = await self.with_library(check)
        target = registry_reference(registry["url"], iid, n)
        pushed, error = await self.in_thread(push, store, Job(store.log(vid), 1800), local_reference(iid, n),
                                             target, registry["tls_verify"])

        def record(lib: Library) -> dict:
            image = lib.get(iid, "edit")
            v = lib.version(image, n)
            v.pushed, v.push_error = pushed, error
            audit_event(lib.db, lib.actor, "image.push", f"image:{image.id}", version=n, pushed=pushed, error=error)
            lib.db.commit()
            return version_json(v)

        answer = await self.with_library(record)
        if error:
            raise Unavailable(f"the push to {target} failed: {error}")
        self.write_json(answer)


class TagAPI(ImagesAPIHandler):
    async def put(self, image_id, tag):
        iid, body = whole(image_id, "image"), self.small_body()
        self.write_json(await self.with_library(
            lambda lib: lib.image_json(lib.set_tag(iid, tag, body.get("version")), True)))

    async def delete(self, image_id, tag):
        iid = whole(image_id, "image")
        await self.with_library(lambda lib: lib.remove_tag(iid, tag))
        self.set_status(204)
        self.finish()


class BuildsAPI(ImagesAPIHandler):
    """Hub admins: every build across workspaces, newest first (``?state=active`` for the
    queue, ``recent`` for everything), for the admin console."""

    async def get(self):
        if not await self.hub_admin():
            raise Forbidden("only hub admins see every workspace's builds")
        offset, limit = self.page_args()
        which = self.get_query_argument("state", "active") or "active"
        if which not in ("active", "recent"):
            raise BadRequest(f"state must be active or recent, not {params.echo(which)}")

        def work(lib: Library):
            from sqlalchemy import func, select

            q = select(ImageVersion)
            if which == "active":
                q = q.where(ImageVersion.state.in_(ACTIVE))
            total = lib.db.scalar(select(func.count()).select_from(q.subquery()))
            rows = lib.db.scalars(q.order_by(ImageVersion.id.desc()).offset(offset).limit(limit))
            return [{**version_json(v), "image": {"id": v.image.id, "name": v.image.name, "kind": v.image.kind,
                                                  "workspace": v.image.workspace_name}} for v in rows], total

        items, total = await self.with_library(work)
        self.write_json(self.paginated(items, offset, limit, total))


class CheckAPI(ImagesAPIHandler):
    """POST {"dockerfile"}: the policy's verdict without building (the editor checks as
    you type): {"ok", "problems", "hints"}."""

    async def post(self):
        self.require_user()
        body = self.small_body()
        try:
            checked = policy.check(body.get("dockerfile"), "base")
        except policy.DockerfileRefused as e:
            self.write_json({"ok": False, "problems": [p.to_json() for p in e.problems], "hints": [],
                             "message": e.message})
            return
        self.write_json({"ok": True, "problems": [], "hints": [h.to_json() for h in checked.hints],
                         "sources": list(checked.sources), "message": ""})


class ResolveAPI(ImagesAPIHandler):
    """POST {"image": choice, "workspace_id": N}: the built version the acting user may
    start (the spawner's call, with ?user=): its root filesystem for the local runtime and
    registry reference for Kubernetes. Any refusal is a 4xx."""

    async def post(self):
        body = self.small_body()
        choice = names.parse_choice(body.get("image"))
        prefer = body.get("workspace_id") if isinstance(body.get("workspace_id"), int) else None
        registry = self.settings["registry"]
        store = self.settings["store"]

        def work(lib: Library):
            image, v = lib.pick(choice, prefer)
            if image.cluster_only:
                raise Conflict(f"{image.name!r} is built for clusters only")
            return {"id": image.id, "name": image.name, "version": v.number, "version_id": v.id,
                    "kind": image.kind, "workspace_id": image.workspace_id,
                    "rootfs": str(store.rootfs(image.workspace_id, v.id)) if v.rootfs else "",
                    "reference": v.pushed or (registry_reference(registry["url"], image.id, v.number)
                                              if registry["url"] else ""),
                    "env": list(v.env or []), "accelerators": list(image.accelerators or [])}

        self.write_json(await self.with_library(work))


# -- pages ---------------------------------------------------------------------------
class IndexPage(ImagesMixin, PageHandler):
    async def get(self):
        if await self.login_or_user() is None:
            return
        workspaces = await self.my_workspaces()
        images = await self.with_library(lambda lib: [lib.image_json(i) for i in lib.visible()])
        self.finish(self.render_page("index.html", images=images, workspaces=workspaces,
                                     actor=self.acting_user()))


class ImagePage(ImagesMixin, PageHandler):
    async def get(self, image_id):
        if await self.login_or_user() is None:
            return
        iid = whole(image_id, "image")
        workspaces = await self.my_workspaces()

        def work(lib: Library):
            image = lib.image_json(lib.get(iid), True)
            bases = [lib.image_json(i, True) for i in lib.visible(usable=True)]
            return image, bases

        image, bases = await self.with_library(work)
        projects = next((w.get("projects") or [] for w in workspaces if w["id"] == image["workspace_id"]), [])
        self.finish(self.render_page("image.html", image=image, bases=bases, projects=projects,
                                     actor=self.acting_user(), registry=self.settings["registry"]["url"]))
