"""HTTP adapters of the data service (thin: rules live in catalog.py, files.py, archives.py,
accounting.py; uploads in upload_handlers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from functools import partial

from sqlalchemy import select

from gemhub.services.common.audit import audit_event
from gemhub.services.common.errors import (
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable,
)
from gemhub.services.common.handlers import APIHandler, PageHandler
from gemhub.services.quota.client import QuotaClient, QuotaError
from gemhub.spawner import layout

from . import accounting, archives, files
from .catalog import Catalog, iso, version_json
from .models import StorageSample, Upload, Version
from .names import split_path

MEMBERSHIP_TTL = 5.0


class DataMixin:
    """The acting user's workspaces (from the quota service, cached briefly) and catalog."""

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
            refusal = {401: Unauthorized, 403: Forbidden, 404: NotFound}.get(e.status, BadRequest)
            if e.status >= 500:
                raise Unavailable(f"the workspace service is unavailable: {e.message}") from None
            raise refusal(e.message) from None
        finally:
            await client.aclose()
        cache[actor] = (time.monotonic(), workspaces)
        return workspaces

    async def catalog(self) -> Catalog:
        if not hasattr(self, "_catalog"):
            workspaces = await self.my_workspaces()
            self._catalog = Catalog(self.db, self.acting_user(), workspaces, self.settings["state_dir"])
        return self._catalog

    async def in_thread(self, fn, *args, **kw):
        """Blocking file work (extract, publish, copy) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kw))

    def allowance(self) -> int:
        return int(self.settings["storage_allowance_gb"] * accounting.GB)


class DataAPIHandler(DataMixin, APIHandler):
    def open_uploads(self, *where) -> list[str]:
        return list(self.db.scalars(select(Upload.id).join(Version, Upload.version_id == Version.id)
                                    .where(Upload.state == "open", *where)))

    def discard_uploads(self, ids: list[str]) -> None:
        """Remove the partial files of uploads whose draft is gone (the rows went with it)."""
        for uid in ids:
            self.settings["upload_store"].discard(uid)

    @contextlib.contextmanager
    def draft_busy(self, asset_id: int, number: int, what: str, exclusive: bool = False):
        """Publishing holds a draft alone; changes (uploads landing, extractions, file
        operations) may share it but never run while it is being published, which would
        freeze a half-done change into a version that can never change again."""
        busy = self.settings["busy_drafts"]
        key = (asset_id, number)
        entry = busy.setdefault(key, {"exclusive": None, "shared": 0})
        if entry["exclusive"] or (exclusive and entry["shared"]):
            doing = entry["exclusive"] or "being changed"
            raise Conflict(f"version {number} is busy ({doing}); try again when it is done")
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
                busy.pop(key, None)

    def int_arg(self, value: str, what: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise BadRequest(f"{what} must be a whole number, not {value!r}") from None


class AssetsAPI(DataAPIHandler):
    async def get(self):
        offset, limit = self.page_args()
        cat = await self.catalog()
        kind = self.get_query_argument("kind", None) or None
        mountable = (self.get_query_argument("mountable", "") or "").lower() in ("1", "true", "yes")
        items = cat.visible(kind, self.get_query_argument("workspace", None) or None, mountable)
        page = [cat.asset_json(a, with_versions=mountable) for a in items[offset:offset + limit]]
        self.write_json(self.paginated(page, offset, limit, len(items)))

    async def post(self):
        cat = await self.catalog()
        a = cat.create(self.json_body())
        self.write_json(cat.asset_json(a), 201)


class AssetAPI(DataAPIHandler):
    async def get(self, asset_id):
        cat = await self.catalog()
        self.write_json(cat.asset_json(cat.get(int(asset_id)), with_versions=True))

    async def patch(self, asset_id):
        cat = await self.catalog()
        a = cat.update(int(asset_id), self.json_body())
        self.write_json(cat.asset_json(a, with_versions=True))

    async def delete(self, asset_id):
        cat = await self.catalog()
        open_uploads = self.open_uploads(Version.asset_id == int(asset_id))
        cat.delete(int(asset_id))
        self.discard_uploads(open_uploads)
        self.set_status(204)
        self.finish()


class VersionsAPI(DataAPIHandler):
    async def get(self, asset_id):
        cat = await self.catalog()
        a = cat.get(int(asset_id))
        items = [version_json(v) for v in a.versions]
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))

    async def post(self, asset_id):
        cat = await self.catalog()
        body = self.json_body() if self.request.body else {}
        if body.get("from_output") is not None:
            v = await self.save_output(cat, int(asset_id), body["from_output"], body.get("note", ""))
            self.write_json(version_json(v), 201)
            return
        _, v = cat.new_draft(int(asset_id), body.get("note", ""))
        self.write_json(version_json(v), 201)

    async def save_output(self, cat: Catalog, asset_id: int, spec, note):
        """Copy ``/gemini/output/<path>`` of a project of the asset's workspace into a new version."""
        a = cat.get(asset_id, "edit")
        if not isinstance(spec, dict):
            raise BadRequest('from_output must be {"project": name or id, "path": "..."}')
        raw = spec.get("path")
        if not isinstance(raw, str):
            raise BadRequest("from_output.path must be a path under /gemini/output")
        rel = raw[len("/gemini/output"):] if raw.startswith("/gemini/output") else raw
        parts = split_path(rel, "from_output.path")
        client = QuotaClient(self.settings["quota_url"], self.settings["quota_token"])
        try:
            project = spec.get("project")
            by_id = isinstance(project, int) and not isinstance(project, bool)
            resolved = await client.resolve(cat.actor, workspace_id=a.workspace_id,
                                            project_id=project if by_id else None,
                                            project=None if by_id else project)
        except QuotaError as e:
            raise BadRequest(e.message) from None
        finally:
            await client.aclose()
        _, output = layout.project_dirs(self.settings["state_dir"], a.workspace_id, resolved["project"]["id"])
        label = {"project_id": resolved["project"]["id"], "project": resolved["project"]["name"],
                 "path": "/gemini/output/" + "/".join(parts)}
        return await self.in_thread(cat.from_output, asset_id, output, "/".join(parts), label, note)


class VersionAPI(DataAPIHandler):
    async def get(self, asset_id, number):
        cat = await self.catalog()
        a = cat.get(int(asset_id))
        self.write_json(version_json(cat.version(a, int(number))))

    async def delete(self, asset_id, number):
        """Discard a draft (published versions never go away)."""
        cat = await self.catalog()
        open_uploads = self.open_uploads(Version.asset_id == int(asset_id), Version.number == int(number))
        cat.discard_draft(int(asset_id), int(number))
        self.discard_uploads(open_uploads)
        self.set_status(204)
        self.finish()


class PublishAPI(DataAPIHandler):
    async def post(self, asset_id, number):
        cat = await self.catalog()
        open_uploads = self.open_uploads(Version.asset_id == int(asset_id), Version.number == int(number))
        with self.draft_busy(int(asset_id), int(number), "being published", exclusive=True):
            _, v = await self.in_thread(cat.publish, int(asset_id), int(number))
        # uploads still open can never land in a published version
        self.db.query(Upload).filter(Upload.id.in_(open_uploads)).delete(synchronize_session=False)
        self.db.commit()
        self.discard_uploads(open_uploads)
        self.write_json(version_json(v))


class FilesAPI(DataAPIHandler):
    """GET lists a folder of any visible version; POST changes a draft:
    {"op": "mkdir"|"rename"|"delete"|"extract", "path": ..., "name": ... (rename, extract)}."""

    async def get(self, asset_id, number):
        cat = await self.catalog()
        a = cat.get(int(asset_id))
        v = cat.version(a, int(number))
        path = self.get_query_argument("path", "") or ""
        self.write_json({"path": path.strip("/"), "state": v.state,
                         "items": files.listing(cat.version_dir(a, v), path)})

    async def post(self, asset_id, number):
        body = self.json_body()
        cat = await self.catalog()
        a, v = cat.draft(int(asset_id), int(number))
        with self.draft_busy(a.id, v.number, "being changed"):
            result = await self.change(cat, a, v, body)
        self.write_json(result)

    async def change(self, cat: Catalog, a, v, body: dict) -> dict:
        root = cat.draft_dir(a, v)
        op, path = body.get("op"), body.get("path")
        result: dict = {"op": op}
        if op == "mkdir":
            files.mkdir(root, path)
        elif op == "rename":
            result["name"] = files.rename(root, path, body.get("name")).name
        elif op == "delete":
            cat.count(v, files.delete(root, path), -1)
        elif op == "extract":
            archive = files.locate(root, path)
            if not archive.is_file():
                raise BadRequest(f"{path!r} is a folder, not an archive")
            limits = self.settings["archive_limits"]
            done = await self.in_thread(archives.extract, archive, archive.parent, limits, body.get("name"))
            cat.count(v, files.Usage(done.files, done.bytes))
            result.update(folder=done.folder, files=done.files, bytes=done.bytes)
        else:
            raise BadRequest(f"op must be mkdir, rename, delete or extract, not {op!r}")
        audit_event(self.db, cat.actor, f"{a.kind}.files.{op}", f"asset:{a.id}", version=v.number, path=path)
        self.db.commit()
        result["version"] = version_json(v)
        return result


class FileContentAPI(DataAPIHandler):
    """The bytes of one file of a visible version (``?path=``)."""

    async def get(self, asset_id, number):
        cat = await self.catalog()
        a = cat.get(int(asset_id))
        v = cat.version(a, int(number))
        target = files.locate(cat.version_dir(a, v), self.get_query_argument("path", "") or "")
        if not target.is_file():
            raise BadRequest("that path is a folder, not a file")
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{target.name}"')
        with open(target, "rb") as f:
            while chunk := f.read(1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


class MountsAPI(DataAPIHandler):
    """POST {"datasets": [...], "models": [...], "workspace_id": N}: the version folders the
    acting user may mount (the spawner's call, with ?user=). Any refusal is a 4xx."""

    async def post(self):
        body = self.json_body()
        cat = await self.catalog()
        prefer = body.get("workspace_id")
        out = []
        for kind, key in (("dataset", "datasets"), ("model", "models")):
            choices = body.get(key) or []
            if not isinstance(choices, list) or len(choices) > 3:
                raise BadRequest(f"{key} must be a list of at most 3 choices")
            for choice in choices:
                a, v = cat.resolve(kind, choice, prefer if isinstance(prefer, int) else None)
                out.append({"kind": kind, "id": a.id, "name": a.name, "version": v.number,
                            "path": str(cat.version_dir(a, v))})
        self.write_json({"mounts": out})


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

    async def _draft(self, asset_id: str, number: str):
        cat = await self.catalog()
        kind = self.get_query_argument("kind", "")
        a = cat.get(int(asset_id))
        if kind and a.kind != kind:
            raise NotFound(f"no {kind} {asset_id} that you can see")
        return cat, *cat.draft(a.id, int(number))

    async def get(self, asset_id, number):
        cat, a, v = await self._draft(asset_id, number)
        draft = cat.draft_dir(a, v)
        self.write_json({"kind": a.kind, "id": a.id, "name": a.name, "version": v.number,
                         "path": str(draft), "lock": str(files.lock_path(draft))})

    async def post(self, asset_id, number):
        cat, a, v = await self._draft(asset_id, number)
        draft = cat.draft_dir(a, v)
        if draft.is_dir():
            held = await self.in_thread(files.usage, draft)
            v.file_count, v.size_bytes = held.files, held.bytes
        audit_event(self.db, cat.actor, f"{a.kind}.sftp.closed", f"asset:{a.id}", version=v.number,
                    files=v.file_count, bytes=v.size_bytes)
        self.db.commit()
        self.write_json(version_json(v))


class LimitsAPI(DataAPIHandler):
    """Upload limits and the suggested chunk size, so clients can split batches themselves."""

    async def get(self):
        self.require_user()
        limits = self.settings["upload_limits"]
        self.write_json({**limits, "storage_allowance_bytes": self.allowance()})


class StorageAPI(DataAPIHandler):
    async def get(self):
        cat = await self.catalog()
        ws = cat.workspace(self.get_query_argument("workspace", None))
        report = accounting.report(self.db, int(ws["id"]), self.allowance())
        self.write_json({**report, "workspace": ws["name"]})


class StorageSamplesAPI(DataAPIHandler):
    """Hourly samples for billing: members of the workspace, hub admins, or the service itself."""

    async def get(self):
        model = self.require_user()
        ws_arg = self.get_query_argument("workspace", None)
        if not ws_arg:
            raise BadRequest("name the workspace (?workspace=ID)")
        if (self.is_internal(model) and not self.get_query_argument("user", None)) or model.get("admin"):
            ws_id = self.int_arg(ws_arg, "workspace")
        else:
            cat = await self.catalog()
            ws_id = int(cat.workspace(ws_arg)["id"])
        since_arg = self.get_query_argument("since", None)
        q = select(StorageSample).where(StorageSample.workspace_id == ws_id)
        if since_arg:
            try:
                since = datetime.datetime.fromisoformat(since_arg.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(f"since must be an ISO 8601 time, not {since_arg!r}") from None
            if since.tzinfo is None:
                raise BadRequest("since must carry a time zone (e.g. 2026-11-25T00:00:00Z)")
            q = q.where(StorageSample.hour >= since)
        offset, limit = self.page_args()
        rows = list(self.db.scalars(q.order_by(StorageSample.hour)))
        items = [{"workspace_id": r.workspace_id, "hour": iso(r.hour), "usage": r.usage, "total": r.total}
                 for r in rows[offset:offset + limit]]
        self.write_json(self.paginated(items, offset, limit, len(rows)))


# -- pages ----------------------------------------------------------------------------
class DataPage(DataMixin, PageHandler):
    pass


class IndexPage(DataPage):
    async def get(self):
        if await self.login_or_user() is None:
            return
        cat = await self.catalog()
        reports = [{**accounting.report(self.db, int(w["id"]), self.allowance()), "workspace": w["name"]}
                   for w in cat.workspaces]
        self.finish(self.render_page("index.html", assets=[cat.asset_json(a) for a in cat.visible()],
                                     workspaces=cat.workspaces, reports=reports, actor=cat.actor))


class AssetPage(DataPage):
    async def get(self, asset_id):
        if await self.login_or_user() is None:
            return
        cat = await self.catalog()
        a = cat.get(int(asset_id))
        asset = cat.asset_json(a, with_versions=True)
        self.finish(self.render_page("asset.html", asset=asset, actor=cat.actor,
                                     limits=self.settings["upload_limits"], sftp=self.sftp_command(asset, cat.actor)))

    def sftp_command(self, asset: dict, actor: str) -> str | None:
        """The ready command for SFTP into the draft (services/ssh/drafts.py), for editors."""
        sftp = self.settings["sftp"]
        if not (sftp["port"] and asset["draft"] and asset["can_edit"]):
            return None
        port = "" if sftp["port"] == 22 else f"-P {sftp['port']} "
        host = sftp["host"] or self.request.host_name
        return f"sftp {port}{actor}+{asset['kind']}-{asset['id']}-{asset['draft']}@{host}"
