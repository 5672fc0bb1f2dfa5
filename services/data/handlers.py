"""HTTP adapters of the data service (thin: rules live in catalog.py, files.py, archives.py,
accounting.py; uploads in upload_handlers.py).

Path ids and every number a client sends are parsed by services/common/params.py; the
database is used through ``in_catalog`` (never a session across an await, never a query
on the event loop); every operation that changes a draft holds its lock (draftlock.py).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import func, select

from gemhub.services.common import params
from gemhub.services.common.audit import audit_event
from gemhub.services.common.errors import (
    BadRequest, Forbidden, NotFound, Unauthorized, Unavailable,
)
from gemhub.services.common.handlers import APIHandler, PageHandler
from gemhub.services.quota.client import QuotaClient, QuotaError
from gemhub.spawner import layout

from . import accounting, archives, files, names
from .catalog import Catalog, iso, version_json
from .models import StorageSample, Upload, Version
from .names import split_path

MEMBERSHIP_TTL = 5.0
T = TypeVar("T")


class DataMixin:
    """The acting user's workspaces (from the quota service, cached briefly) and catalog.

    Database work runs in ``in_catalog`` (a worker thread and a session of its own, plain
    data out); the quota service is awaited before it, never while a session is open.
    """

    async def my_workspaces(self) -> list[dict]:
        """The actor's workspaces from the quota service, cached for MEMBERSHIP_TTL seconds;
        concurrent requests of one user share one question (a burst of a user's requests
        with a cold cache asks the quota service once, not once each)."""
        actor = self.acting_user()
        cache = self.settings["membership_cache"]
        hit = cache.get(actor)
        if hit is not None and time.monotonic() - hit[0] < MEMBERSHIP_TTL:
            return hit[1]
        asking = self.settings["membership_asking"]
        if actor not in asking:
            asking[actor] = asyncio.ensure_future(self._ask_quota(actor))
            asking[actor].add_done_callback(lambda _f: asking.pop(actor, None))
        return await asyncio.shield(asking[actor])

    async def _ask_quota(self, actor: str) -> list[dict]:
        client = QuotaClient(self.settings["quota_url"], self.settings["quota_token"])
        try:
            workspaces = await client.list_workspaces(user=actor)
        except QuotaError as e:
            refusal = {401: Unauthorized, 403: Forbidden, 404: NotFound}.get(e.status, BadRequest)
            if e.status >= 500:
                raise Unavailable(f"the workspace service is unavailable: {e.message}") from None
            raise refusal(e.message) from None
        finally:
            await client.aclose()
        self.settings["membership_cache"][actor] = (time.monotonic(), workspaces)
        return workspaces

    async def in_catalog(self, fn: Callable[..., T], *args: Any, files_work: bool = False) -> T:
        """``fn(catalog, *args)`` with the actor's :class:`Catalog` in a session of its own:
        in the database's threads, or (``files_work``: publishing, extracting, copying) in
        the general thread pool, so long file work never ties up the database's workers."""
        workspaces = await self.my_workspaces()
        actor, state_dir = self.acting_user(), self.settings["state_dir"]

        def work(session):
            return fn(Catalog(session, actor, workspaces, state_dir), *args)

        if files_work:
            return await self.in_thread(self.settings["database"].call, work)
        return await self.run_db(work)

    async def in_thread(self, fn, *args, **kw):
        """Blocking file work (extract, publish, copy) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kw))

    def allowance(self) -> int:
        return int(self.settings["storage_allowance_gb"] * accounting.GB)

    def draft_lock(self, asset_id: int, what: str, exclusive: bool = False):
        """The asset's draft lock (draftlock.py): 409 when another operation holds it."""
        return self.settings["draft_locks"].hold(asset_id, what, exclusive)


def open_uploads(session, *where) -> list[str]:
    return list(session.scalars(select(Upload.id).join(Version, Upload.version_id == Version.id)
                                .where(Upload.state == "open", *where)))


class DataAPIHandler(DataMixin, APIHandler):
    def discard_uploads(self, ids: list[str]) -> None:
        """Remove the partial files of uploads whose draft is gone (the rows went with it)."""
        for uid in ids:
            self.settings["upload_store"].discard(uid)

    def asset_arg(self, asset_id: str) -> int:
        return self.id_arg(asset_id, "dataset or model id")

    def version_arg(self, number: str) -> int:
        return self.id_arg(number, "version")


class AssetsAPI(DataAPIHandler):
    async def get(self):
        offset, limit = self.page_args()
        kind = self.get_query_argument("kind", None) or None
        workspace = params.ref(self.get_query_argument("workspace", None), "workspace")
        mountable = params.flag(self.get_query_argument("mountable", None), "mountable")

        def page(cat: Catalog):
            items = cat.visible(kind, workspace, mountable)
            return [cat.asset_json(a, with_versions=mountable) for a in items[offset:offset + limit]], len(items)

        items, total = await self.in_catalog(page)
        self.write_json(self.paginated(items, offset, limit, total))

    async def post(self):
        body = self.json_body()
        self.write_json(await self.in_catalog(lambda cat: cat.asset_json(cat.create(body))), 201)


class AssetAPI(DataAPIHandler):
    async def get(self, asset_id):
        asset_id = self.asset_arg(asset_id)
        self.write_json(await self.in_catalog(lambda cat: cat.asset_json(cat.get(asset_id), with_versions=True)))

    async def patch(self, asset_id):
        asset_id = self.asset_arg(asset_id)
        body = self.json_body()
        self.write_json(await self.in_catalog(
            lambda cat: cat.asset_json(cat.update(asset_id, body), with_versions=True)))

    async def delete(self, asset_id):
        asset_id = self.asset_arg(asset_id)

        def delete(cat: Catalog):
            uploads = open_uploads(cat.db, Version.asset_id == asset_id)
            cat.delete(asset_id)
            return uploads

        with self.draft_lock(asset_id, "being deleted", exclusive=True):
            self.discard_uploads(await self.in_catalog(delete, files_work=True))
        self.set_status(204)
        self.finish()


class VersionsAPI(DataAPIHandler):
    async def get(self, asset_id):
        asset_id = self.asset_arg(asset_id)
        items = await self.in_catalog(lambda cat: [version_json(v) for v in cat.get(asset_id).versions])
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))

    async def post(self, asset_id):
        asset_id = self.asset_arg(asset_id)
        body = self.json_body(default={})
        with self.draft_lock(asset_id, "getting a new version", exclusive=True):
            if body.get("from_output") is not None:
                v = await self.save_output(asset_id, body["from_output"], body.get("note", ""))
            else:
                v = await self.in_catalog(lambda cat: version_json(cat.new_draft(asset_id, body.get("note", ""))[1]))
        self.write_json(v, 201)

    async def save_output(self, asset_id: int, spec, note) -> dict:
        """Copy ``/gemini/output/<path>`` of a project of the asset's workspace into a new version."""
        a = await self.in_catalog(lambda cat: {"workspace_id": cat.get(asset_id, "edit").workspace_id})
        if not isinstance(spec, dict):
            raise BadRequest('from_output must be {"project": name or id, "path": "..."}')
        raw = spec.get("path")
        if not isinstance(raw, str):
            raise BadRequest("from_output.path must be a path under /gemini/output")
        rel = raw[len("/gemini/output"):] if raw.startswith("/gemini/output") else raw
        parts = split_path(rel, "from_output.path")
        project = params.ref(spec.get("project"), "from_output.project")
        client = QuotaClient(self.settings["quota_url"], self.settings["quota_token"])
        try:
            by_id = isinstance(project, int)
            resolved = await client.resolve(self.acting_user(), workspace_id=a["workspace_id"],
                                            project_id=project if by_id else None,
                                            project=None if by_id else project)
        except QuotaError as e:
            if e.status >= 500:
                raise Unavailable(f"the workspace service is unavailable: {e.message}") from None
            raise BadRequest(e.message) from None
        finally:
            await client.aclose()
        _, output = layout.project_dirs(self.settings["state_dir"], a["workspace_id"], resolved["project"]["id"])
        label = {"project_id": resolved["project"]["id"], "project": resolved["project"]["name"],
                 "path": "/gemini/output/" + "/".join(parts)}
        return await self.in_catalog(
            lambda cat: version_json(cat.from_output(asset_id, output, "/".join(parts), label, note)),
            files_work=True)


class VersionAPI(DataAPIHandler):
    async def get(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)
        self.write_json(await self.in_catalog(lambda cat: version_json(cat.version(cat.get(asset_id), number))))

    async def delete(self, asset_id, number):
        """Discard a draft (published versions never go away)."""
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)

        def discard(cat: Catalog):
            uploads = open_uploads(cat.db, Version.asset_id == asset_id, Version.number == number)
            cat.discard_draft(asset_id, number)
            return uploads

        with self.draft_lock(asset_id, "being discarded", exclusive=True):
            self.discard_uploads(await self.in_catalog(discard, files_work=True))
        self.set_status(204)
        self.finish()


class PublishAPI(DataAPIHandler):
    async def post(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)

        def publish(cat: Catalog):
            uploads = open_uploads(cat.db, Version.asset_id == asset_id, Version.number == number)
            _, v = cat.publish(asset_id, number)
            # uploads still open can never land in a published version
            cat.db.query(Upload).filter(Upload.id.in_(uploads)).delete(synchronize_session=False)
            cat.db.commit()
            return version_json(v), uploads

        with self.draft_lock(asset_id, "being published", exclusive=True):
            v, uploads = await self.in_catalog(publish, files_work=True)
        self.discard_uploads(uploads)
        self.write_json(v)


class FilesAPI(DataAPIHandler):
    """GET lists a folder of any visible version; POST changes a draft:
    {"op": "mkdir"|"rename"|"delete"|"extract", "path": ..., "name": ... (rename, extract)}."""

    async def get(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)
        path = self.get_query_argument("path", "") or ""

        def listing(cat: Catalog):
            a = cat.get(asset_id)
            v = cat.version(a, number)
            return {"path": path.strip("/"), "state": v.state, "items": files.listing(cat.version_dir(a, v), path)}

        self.write_json(await self.in_catalog(listing))

    async def post(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)
        body = self.json_body()
        op = body.get("op")
        if op not in ("mkdir", "rename", "delete", "extract"):
            raise BadRequest(f"op must be mkdir, rename, delete or extract, not {params.echo(op)}")
        limits = self.settings["archive_limits"]
        with self.draft_lock(asset_id, "being changed"):
            result = await self.in_catalog(change, asset_id, number, body, limits, files_work=True)
        self.write_json(result)


def change(cat: Catalog, asset_id: int, number: int, body: dict, limits: archives.Limits) -> dict:
    """One file operation on a draft, counted and audited (blocking: run off the loop)."""
    a, v = cat.draft(asset_id, number)
    root = cat.draft_dir(a, v)
    op, path = body.get("op"), body.get("path")
    result: dict = {"op": op}
    if op == "mkdir":
        files.mkdir(root, path)
    elif op == "rename":
        result["name"] = files.rename(root, path, body.get("name")).name
    elif op == "delete":
        cat.count(v, files.delete(root, path), -1)
    else:
        archive = files.locate(root, path)
        if not archive.is_file():
            raise BadRequest(f"{params.echo(path)} is a folder, not an archive")
        done = archives.extract(archive, archive.parent, limits, body.get("name"))
        cat.count(v, files.Usage(done.files, done.bytes))
        result.update(folder=done.folder, files=done.files, bytes=done.bytes)
    audit_event(cat.db, cat.actor, f"{a.kind}.files.{op}", f"asset:{a.id}", version=v.number, path=path)
    cat.db.commit()
    result["version"] = version_json(v)
    return result


class FileContentAPI(DataAPIHandler):
    """The bytes of one file of a visible version (``?path=``)."""

    async def get(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)
        path = self.get_query_argument("path", "") or ""

        def locate(cat: Catalog):
            a = cat.get(asset_id)
            target = files.locate(cat.version_dir(a, cat.version(a, number)), path)
            if not target.is_file():
                raise BadRequest("that path is a folder, not a file")
            return target

        target = await self.in_catalog(locate)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{target.name}"')
        with open(target, "rb") as f:
            while chunk := await self.in_thread(f.read, 1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


class MountsAPI(DataAPIHandler):
    """POST {"datasets": [...], "models": [...], "workspace_id": N}: the version folders the
    acting user may mount (the spawner's call, with ?user=). Any refusal is a 4xx."""

    async def post(self):
        body = self.json_body()
        prefer = params.optional(body.get("workspace_id"), "workspace_id", low=1)
        wanted = []
        for kind, key in (("dataset", "datasets"), ("model", "models")):
            choices = body.get(key) or []
            if not isinstance(choices, list) or len(choices) > 3:
                raise BadRequest(f"{key} must be a list of at most 3 choices")
            wanted += [(kind, choice) for choice in choices]

        def resolve(cat: Catalog):
            out = []
            for kind, choice in wanted:
                a, v = cat.resolve(kind, choice, prefer)
                out.append({"kind": kind, "id": a.id, "name": a.name, "version": v.number,
                            "path": str(cat.version_dir(a, v))})
            return out

        self.write_json({"mounts": await self.in_catalog(resolve)})


class SFTPTargetAPI(DataAPIHandler):
    """The SSH gateway's questions about a draft login (``alice+dataset-3-1``), asked for
    ``?user=`` with the gateway's own token; no one else may ask.

    GET ``?kind=dataset|model``: may the user write this draft? Answers its folder and the
    lock file a session holds (4xx with the reason otherwise). POST: a session into it has
    ended; the draft is re-measured so its size and the storage counters include the files."""

    def acting_user(self) -> str:
        model = self.require_user()
        if model.get("kind") != "service" or model.get("name") not in self.settings["draft_writers"]:
            raise Forbidden("only the SSH gateway may ask about SFTP into a draft")
        user = (self.get_query_argument("user", "") or "").strip()
        if not user:
            raise BadRequest("name the user the session is for (?user=NAME)")
        return user

    def _draft(self, cat: Catalog, asset_id: int, number: int):
        kind = self.get_query_argument("kind", "")
        if kind:
            names.check_kind(kind)
        a = cat.get(asset_id)
        if kind and a.kind != kind:
            raise NotFound(f"no {kind} {asset_id} that you can see")
        return cat.draft(a.id, number)

    async def get(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)

        def target(cat: Catalog):
            a, v = self._draft(cat, asset_id, number)
            draft = cat.draft_dir(a, v)
            return {"kind": a.kind, "id": a.id, "name": a.name, "version": v.number,
                    "path": str(draft), "lock": str(files.lock_path(draft))}

        self.write_json(await self.in_catalog(target))

    async def post(self, asset_id, number):
        asset_id, number = self.asset_arg(asset_id), self.version_arg(number)

        def closed(cat: Catalog):
            a, v = self._draft(cat, asset_id, number)
            draft = cat.draft_dir(a, v)
            if draft.is_dir():
                held = files.usage(draft)
                v.file_count, v.size_bytes = held.files, held.bytes
            audit_event(cat.db, cat.actor, f"{a.kind}.sftp.closed", f"asset:{a.id}", version=v.number,
                        files=v.file_count, bytes=v.size_bytes)
            cat.db.commit()
            return version_json(v)

        with self.draft_lock(asset_id, "being measured"):
            self.write_json(await self.in_catalog(closed, files_work=True))


class LimitsAPI(DataAPIHandler):
    """Upload limits and the suggested chunk size, so clients can split batches themselves."""

    async def get(self):
        self.require_user()
        limits = self.settings["upload_limits"]
        self.write_json({**limits, "storage_allowance_bytes": self.allowance()})


class StorageAPI(DataAPIHandler):
    async def get(self):
        ref = params.ref(self.get_query_argument("workspace", None), "workspace")
        allowance = self.allowance()

        def report(cat: Catalog):
            ws = cat.workspace(ref)
            return {**accounting.report(cat.db, int(ws["id"]), allowance), "workspace": ws["name"]}

        self.write_json(await self.in_catalog(report))


class StorageSamplesAPI(DataAPIHandler):
    """Hourly samples for billing: members of the workspace, hub admins, or the service itself."""

    async def get(self):
        model = self.require_user()
        ws_arg = self.get_query_argument("workspace", None)
        if not ws_arg:
            raise BadRequest("name the workspace (?workspace=ID)")
        if (self.is_internal(model) and not self.get_query_argument("user", None)) or model.get("admin"):
            ws_id = params.id_arg(ws_arg, "workspace")
        else:
            ref = params.ref(ws_arg, "workspace")
            ws_id = await self.in_catalog(lambda cat: int(cat.workspace(ref)["id"]))
        since_arg = self.get_query_argument("since", None)
        since = None
        if since_arg:
            try:
                since = datetime.datetime.fromisoformat(since_arg.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(f"since must be an ISO 8601 time, not {params.echo(since_arg)}") from None
            if since.tzinfo is None:
                raise BadRequest("since must carry a time zone (e.g. 2026-11-25T00:00:00Z)")
        offset, limit = self.page_args()

        def samples(session):
            q = select(StorageSample).where(StorageSample.workspace_id == ws_id)
            if since is not None:
                q = q.where(StorageSample.hour >= since)
            total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = session.scalars(q.order_by(StorageSample.hour).offset(offset).limit(limit))
            return [{"workspace_id": r.workspace_id, "hour": iso(r.hour), "usage": r.usage, "total": r.total}
                    for r in rows], total

        items, total = await self.run_db(samples)
        self.write_json(self.paginated(items, offset, limit, total))


# -- pages ----------------------------------------------------------------------------
class DataPage(DataMixin, PageHandler):
    pass


class IndexPage(DataPage):
    async def get(self):
        if await self.login_or_user() is None:
            return
        allowance = self.allowance()

        def page(cat: Catalog):
            reports = [{**accounting.report(cat.db, int(w["id"]), allowance), "workspace": w["name"]}
                       for w in cat.workspaces]
            return {"assets": [cat.asset_json(a) for a in cat.visible()], "workspaces": cat.workspaces,
                    "reports": reports, "actor": cat.actor}

        self.finish(self.render_page("index.html", **await self.in_catalog(page)))


class AssetPage(DataPage):
    async def get(self, asset_id):
        if await self.login_or_user() is None:
            return
        asset_id = self.id_arg(asset_id, "dataset or model id")
        asset = await self.in_catalog(lambda cat: cat.asset_json(cat.get(asset_id), with_versions=True))
        actor = self.acting_user()
        self.finish(self.render_page("asset.html", asset=asset, actor=actor,
                                     limits=self.settings["upload_limits"], sftp=self.sftp_command(asset, actor)))

    def sftp_command(self, asset: dict, actor: str) -> str | None:
        """The ready command for SFTP into the draft (services/ssh/drafts.py), for editors."""
        sftp = self.settings["sftp"]
        if not (sftp["port"] and asset["draft"] and asset["can_edit"]):
            return None
        port = "" if sftp["port"] == 22 else f"-P {sftp['port']} "
        host = sftp["host"] or self.request.host_name
        return f"sftp {port}{actor}+{asset['kind']}-{asset['id']}-{asset['draft']}@{host}"
