"""HTTP adapters of the quota service (thin: rules live in domain.py/workspaces.py)."""

from __future__ import annotations

from gemhub.lab import limits as runtime_limits
from gemhub.services.common.errors import BadRequest, Conflict, Forbidden
from gemhub.services.common.handlers import APIHandler, PageHandler

from . import domain, presets
from .hubapi import spawn_background
from .unixgroups import WorkspaceGroups
from .models import Membership, Workspace
from .workspaces import (
    Workspaces,
    admin_workspace_json,
    member_json,
    preset_limits_json,
    project_json,
    workspace_json,
)

MAX_MEMBER_FILTER = 200  # ?member= names in one admin listing (a page of the console's users)


class QuotaMixin:
    """Shared by API and page handlers: the acting user's view of the workspaces."""

    def workspaces(self) -> Workspaces:
        if not hasattr(self, "_workspaces"):
            actor = self.acting_user()
            ws = Workspaces(self.db, actor, self.settings["state_dir"])
            seen = self.settings["seen_users"]
            if actor not in seen:
                personal = ws.ensure_personal()
                seen.add(actor)
                self.sync_group(personal.id)
            self._workspaces = ws
        return self._workspaces

    def sync_group(self, ws_id: int) -> None:
        """Mirror the workspace's members into hub group ws-<id>, in the background."""
        hub = self.settings["hub_api"]
        sessionmaker = self.settings["sessionmaker"]

        def members():
            with sessionmaker() as s:
                if s.get(Workspace, ws_id) is None:
                    return None
                return [m.username for m in s.query(Membership).filter_by(workspace_id=ws_id)]

        spawn_background(hub.sync_group(ws_id, members))

    def unix_groups(self) -> "WorkspaceGroups":
        return self.settings["unix_groups"]

    async def revoke_access(self, ws_id: int, username: str) -> None:
        """Stop ``username``'s servers in the workspace and take them out of its unix group."""
        stopped = await self.settings["hub_api"].stop_servers(username, ws_id)
        if stopped:
            self.log.info("stopped %s's servers %s: removed from workspace %s", username, stopped, ws_id)
        await self.unix_groups().remove_member(ws_id, username)

    async def refuse_if_running(self, ws_id: int, project_id: int | None = None) -> None:
        servers = await self.settings["hub_api"].running_servers()
        for s in servers:
            opts = s["user_options"]
            if str(opts.get("workspace_id")) != str(ws_id):
                continue
            if project_id is not None and str(opts.get("project_id")) != str(project_id):
                continue
            what = f"project {project_id}" if project_id is not None else f"workspace {ws_id}"
            label = f"{s['user']}/{s['server']}" if s["server"] else s["user"]
            raise Conflict(f"{what} is in use by the running server of {label}; stop it first")


class QuotaAPIHandler(QuotaMixin, APIHandler):
    def truthy(self, name: str) -> bool:
        return (self.get_query_argument(name, "") or "").lower() in ("1", "true", "yes")

    def id_argument(self, name: str) -> int | None:
        """An id from the query: ASCII digits that fit a BIGINT, else a 400."""
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return None
        if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**63 - 1:
            raise BadRequest(f"{name} must be a whole number (an id), not {raw[:40]!r}")
        return int(raw)


class WorkspacesAPI(QuotaAPIHandler):
    async def get(self):
        offset, limit = self.page_args()
        store = self.workspaces()
        rows, total = store.mine(offset, limit)
        items = []
        for ws, role in rows:
            item = workspace_json(ws, role)
            if self.truthy("include_projects"):
                item["projects"] = [project_json(p) for p in store.projects(ws)[0]]
            items.append(item)
        self.write_json(self.paginated(items, offset, limit, total))

    async def post(self):
        body = self.json_body()
        ws = self.workspaces().create(body.get("name"))
        self.sync_group(ws.id)
        self.write_json(workspace_json(ws, domain.OWNER), 201)


class WorkspaceAPI(QuotaAPIHandler):
    async def get(self, ws_id):
        ws, role = self.workspaces().get(int(ws_id))
        self.write_json(workspace_json(ws, role))

    async def patch(self, ws_id):
        body = self.json_body()
        limits = {k: body[k] for k in ("allowed_presets", "custom_spec") if k in body}
        if "name" not in body and not limits and "max_runtime_minutes" not in body:
            raise BadRequest("nothing to change: send name, allowed_presets, custom_spec or max_runtime_minutes")
        store = self.workspaces()
        minutes = await self.runtime_limit(body, store.actor)
        if limits:
            # checked before anything changes, so a refused request changes nothing
            presets.require_hub_admin(await self.settings["hub_api"].is_admin(store.actor))
            known = tuple(self.settings["preset_names"])
            if "allowed_presets" in limits:
                presets.validate_allowed_presets(limits["allowed_presets"], known)
            if "custom_spec" in limits:
                presets.validate_custom_spec(limits["custom_spec"])
        ws = store.rename(int(ws_id), body["name"]) if "name" in body else None
        if limits:
            ws = store.set_preset_limits(int(ws_id), known_presets=known, **limits)
        if "max_runtime_minutes" in body:
            ws = store.set_runtime_limit(int(ws_id), minutes)
        self.write_json(workspace_json(ws, store.role_in(ws)))

    async def runtime_limit(self, body: dict, actor: str) -> int | None:
        """The run-time limit in ``body`` (checked before anything changes). Hub admins set
        it (seed 001), not workspace owners: it bounds what a workspace may use."""
        if "max_runtime_minutes" not in body:
            return None
        if not await self.settings["hub_api"].is_admin(actor):
            raise Forbidden("only hub administrators may set a workspace's run-time limit")
        try:
            return runtime_limits.check_minutes(body["max_runtime_minutes"])
        except runtime_limits.LimitError as e:
            raise BadRequest(str(e)) from None

    async def delete(self, ws_id):
        store = self.workspaces()
        ws, _ = store.get(int(ws_id), domain.DELETE)
        if ws.personal:
            raise Conflict("a personal workspace cannot be deleted")
        await self.refuse_if_running(ws.id)
        store.delete(ws.id)
        self.sync_group(int(ws_id))
        await self.unix_groups().remove_workspace(ws.id)
        self.set_status(204)
        self.finish()


class MembersAPI(QuotaAPIHandler):
    async def get(self, ws_id):
        store = self.workspaces()
        ws, _ = store.get(int(ws_id))
        items = [member_json(m) for m in store.members(ws)]
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))

    async def post(self, ws_id):
        body = self.json_body()
        store = self.workspaces()
        ws, role = store.get(int(ws_id))
        username = domain.validate_username(body.get("username"))
        new_role = domain.validate_role(body.get("role", domain.MEMBER))
        domain.check_member_change(store.actor, role, username, None, new_role, 2)
        if store.role_in(ws, username) is None and not await self.settings["hub_api"].user_exists(username):
            raise BadRequest(f"there is no user named {username!r}")
        m = store.add_member(ws.id, username, new_role)
        self.sync_group(ws.id)
        self.write_json(member_json(m), 201)


class MemberAPI(QuotaAPIHandler):
    async def get(self, ws_id, username):
        store = self.workspaces()
        ws, _ = store.get(int(ws_id))
        self.write_json(member_json(store.member(ws, username)))

    async def patch(self, ws_id, username):
        body = self.json_body()
        if "role" not in body:
            raise BadRequest("nothing to change: send {\"role\": ...}")
        m = self.workspaces().change_member(int(ws_id), username, body["role"])
        self.write_json(member_json(m))

    async def delete(self, ws_id, username):
        """Remove a member: their servers in this workspace stop and they leave its unix
        group first, so a removed member keeps no access (from a running server, a terminal
        or an SSH session) to the workspace's files."""
        store = self.workspaces()
        store.check_remove_member(int(ws_id), username)
        self.db.rollback()  # no database connection is held while the hub is asked
        await self.revoke_access(int(ws_id), username)
        store.remove_member(int(ws_id), username)
        self.sync_group(int(ws_id))
        self.set_status(204)
        self.finish()


class ProjectsAPI(QuotaAPIHandler):
    async def get(self, ws_id):
        offset, limit = self.page_args()
        store = self.workspaces()
        ws, _ = store.get(int(ws_id))
        items, total = store.projects(ws, offset, limit)
        self.write_json(self.paginated([project_json(p) for p in items], offset, limit, total))

    async def post(self, ws_id):
        body = self.json_body()
        p = self.workspaces().create_project(int(ws_id), body.get("name"))
        self.write_json(project_json(p), 201)


class ProjectAPI(QuotaAPIHandler):
    async def get(self, ws_id, project_id):
        store = self.workspaces()
        ws, _ = store.get(int(ws_id))
        self.write_json(project_json(store.project_by_id(ws, int(project_id))))

    async def patch(self, ws_id, project_id):
        body = self.json_body()
        if "name" not in body:
            raise BadRequest("nothing to change: send {\"name\": ...}")
        p = self.workspaces().rename_project(int(ws_id), int(project_id), body["name"])
        self.write_json(project_json(p))

    async def delete(self, ws_id, project_id):
        store = self.workspaces()
        ws, _ = store.get(int(ws_id), domain.MANAGE_PROJECTS)
        p = store.project_by_id(ws, int(project_id))
        await self.refuse_if_running(ws.id, p.id)
        store.delete_project(ws.id, p.id)
        self.set_status(204)
        self.finish()


class AdminWorkspacesAPI(QuotaAPIHandler):
    """Every workspace with its members (hub admins: the hub's admin console reads it).
    ``?search=`` matches a part of a workspace's or a member's name, ``?member=NAME``
    (repeatable) keeps the workspaces those users belong to."""

    async def get(self):
        offset, limit = self.page_args()
        store = self.workspaces()
        await self.require_hub_admin(store.actor)
        search = (self.get_query_argument("search", "") or "").strip()
        if len(search) > domain.MAX_NAME:
            raise BadRequest(f"search is at most {domain.MAX_NAME} characters (got {len(search)})")
        members = tuple(dict.fromkeys(m.strip() for m in self.get_query_arguments("member") if m.strip()))
        if len(members) > MAX_MEMBER_FILTER:
            raise BadRequest(f"name at most {MAX_MEMBER_FILTER} members at once (got {len(members)})")
        rows, total = store.every(search, members, offset, limit)
        ids = [ws.id for ws in rows]
        people, projects = store.members_of(ids), store.project_counts(ids)
        items = [admin_workspace_json(ws, people[ws.id], projects[ws.id]) for ws in rows]
        self.write_json(self.paginated(items, offset, limit, total))

    async def require_hub_admin(self, actor: str) -> None:
        if not await self.settings["hub_api"].is_admin(actor):
            raise Forbidden("only hub administrators may list every workspace")


class AdminWorkspaceAPI(AdminWorkspacesAPI):
    """One workspace with its members and projects, for hub admins (no membership needed)."""

    async def get(self, ws_id):
        store = self.workspaces()
        await self.require_hub_admin(store.actor)
        ws, _ = store.view(int(ws_id), hub_admin=True)
        item = admin_workspace_json(ws, store.members(ws), store.projects(ws, 0, 0)[1])
        item["projects"] = [project_json(p) for p in store.projects(ws, 0, 10_000)[0]]
        self.write_json(item)


class ResolveAPI(QuotaAPIHandler):
    """The workspace and project of a request: ``workspace_id``/``project_id`` by id,
    ``workspace``/``project`` by name among the user's own workspaces; an id wins over a
    name, and nothing given means the personal workspace / project "default"."""

    async def get(self):
        store = self.workspaces()
        ws_id = self.id_argument("workspace_id")
        pr_id = self.id_argument("project_id")
        ws_name = (self.get_query_argument("workspace", "") or "").strip()
        pr_name = (self.get_query_argument("project", "") or "").strip()
        if ws_id is not None:
            ws, _ = store.get(ws_id)
        elif ws_name:
            ws, _ = store.find_mine(ws_name)
        else:
            ws = store.ensure_personal()
        if pr_id is not None:
            p = store.project_by_id(ws, pr_id)
        else:
            p = store.project_by_name(ws, pr_name or domain.DEFAULT_PROJECT)
        self.write_json({"workspace": {"id": ws.id, "name": ws.name, "personal": ws.personal,
                                       "max_runtime_minutes": ws.max_runtime_minutes,
                                       **preset_limits_json(ws)},
                         "project": {"id": p.id, "name": p.name}})


# -- HTML pages ------------------------------------------------------------------------
class QuotaPage(QuotaMixin, PageHandler):
    pass


class IndexPage(QuotaPage):
    async def get(self):
        if await self.login_or_user() is None:
            return
        store = self.workspaces()
        rows, _ = store.mine(0, 10_000)
        items = []
        for ws, role in rows:
            item = workspace_json(ws, role)
            item["project_count"] = store.projects(ws, 0, 0)[1]
            items.append(item)
        self.finish(self.render_page("index.html", workspaces=items, actor=store.actor))


class WorkspacePage(QuotaPage):
    async def get(self, ws_id):
        if await self.login_or_user() is None:
            return
        store = self.workspaces()
        # asked of the hub on every view: admin rights can be granted or revoked at any time
        hub_admin = await self.settings["hub_api"].is_admin(store.actor)
        ws, role = store.view(int(ws_id), hub_admin)
        perms = domain.PERMISSIONS.get(role, frozenset())
        self.finish(self.render_page(
            "workspace.html",
            ws=workspace_json(ws, role),
            role=role,
            hub_admin=hub_admin,
            preset_names=list(self.settings["preset_names"]),
            can={p: p in perms for p in (domain.RENAME, domain.DELETE, domain.MANAGE_MEMBERS,
                                         domain.MANAGE_PROJECTS, domain.CREATE_PROJECT)},
            projects=[project_json(p) for p in store.projects(ws, 0, 10_000)[0]],
            members=[member_json(m) for m in store.members(ws)],
            roles=domain.ROLES,
            actor=store.actor,
        ))
