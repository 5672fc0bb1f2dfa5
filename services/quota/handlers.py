"""HTTP adapters of the quota service (thin: rules live in domain.py/workspaces.py).

Every handler follows the services' rules (services/common/db.py, params.py): path ids are
parsed by ``id_arg``, database work runs in ``in_store`` (a worker thread, a session of
its own, plain data out) and the hub is awaited between database calls, never inside one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gemhub.lab import limits as runtime_limits
from gemhub.services.common import params
from gemhub.services.common.errors import BadRequest, Conflict, Forbidden
from gemhub.services.common.handlers import APIHandler, PageHandler

from . import domain, presets
from .hubapi import spawn_background
from .models import Membership, Workspace
from .unixgroups import WorkspaceGroups
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

    async def in_store(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(store, *args)`` with the actor's :class:`Workspaces` in a worker thread; the
        first request of a user also makes their personal workspace."""
        actor = self.acting_user()
        state_dir = self.settings["state_dir"]
        seen = self.settings["seen_users"]
        first = actor not in seen

        def work(session):
            store = Workspaces(session, actor, state_dir)
            personal = store.ensure_personal().id if first else None
            return personal, fn(store, *args)

        personal, result = await self.run_db(work)
        if first:
            seen.add(actor)
            self.sync_group(personal)
        return result

    def sync_group(self, ws_id: int) -> None:
        """Mirror the workspace's members into hub group ws-<id>, in the background."""
        hub = self.settings["hub_api"]
        database = self.settings["database"]

        def read(s):
            if s.get(Workspace, ws_id) is None:
                return None
            return [m.username for m in s.query(Membership).filter_by(workspace_id=ws_id)]

        async def members():
            return await database.run(read)

        spawn_background(hub.sync_group(ws_id, members))

    def unix_groups(self) -> WorkspaceGroups:
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
    def flag(self, name: str) -> bool:
        return params.flag(self.get_query_argument(name, None), name)


class WorkspacesAPI(QuotaAPIHandler):
    async def get(self):
        offset, limit = self.page_args()
        with_projects = self.flag("include_projects")

        def page(store: Workspaces):
            rows, total = store.mine(offset, limit)
            items = []
            for ws, role in rows:
                item = workspace_json(ws, role)
                if with_projects:
                    item["projects"] = [project_json(p) for p in store.projects(ws)[0]]
                items.append(item)
            return items, total

        items, total = await self.in_store(page)
        self.write_json(self.paginated(items, offset, limit, total))

    async def post(self):
        body = self.json_body()
        ws = await self.in_store(lambda store: workspace_json(store.create(body.get("name")), domain.OWNER))
        self.sync_group(ws["id"])
        self.write_json(ws, 201)


class WorkspaceAPI(QuotaAPIHandler):
    async def get(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        self.write_json(await self.in_store(lambda store: workspace_json(*store.get(ws_id))))

    async def patch(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        body = self.json_body()
        limits = {k: body[k] for k in ("allowed_presets", "custom_spec") if k in body}
        if "name" not in body and not limits and "max_runtime_minutes" not in body:
            raise BadRequest("nothing to change: send name, allowed_presets, custom_spec or max_runtime_minutes")
        actor = self.acting_user()
        known = tuple(self.settings["preset_names"])
        # checked before anything changes, so a refused request changes nothing
        hub_admin = False
        if limits or "max_runtime_minutes" in body:
            hub_admin = await self.settings["hub_api"].is_admin(actor)
        minutes = self.runtime_limit(body, hub_admin) if "max_runtime_minutes" in body else None
        if limits:
            presets.require_hub_admin(hub_admin)
            if "allowed_presets" in limits:
                presets.validate_allowed_presets(limits["allowed_presets"], known)
            if "custom_spec" in limits:
                presets.validate_custom_spec(limits["custom_spec"])

        def change(store: Workspaces):
            ws = store.rename(ws_id, body["name"]) if "name" in body else None
            if limits:
                ws = store.set_preset_limits(ws_id, known_presets=known, **limits)
            if "max_runtime_minutes" in body:
                ws = store.set_runtime_limit(ws_id, minutes)
            return workspace_json(ws, store.role_in(ws))

        self.write_json(await self.in_store(change))

    @staticmethod
    def runtime_limit(body: dict, hub_admin: bool) -> int | None:
        """The run-time limit in ``body``. Hub admins set it (seed 001), not workspace
        owners: it bounds what a workspace may use."""
        if not hub_admin:
            raise Forbidden("only hub administrators may set a workspace's run-time limit")
        try:
            return runtime_limits.check_minutes(body["max_runtime_minutes"])
        except runtime_limits.LimitError as e:
            raise BadRequest(str(e)) from None

    async def delete(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")

        def check(store: Workspaces):
            ws, _ = store.get(ws_id, domain.DELETE)
            if ws.personal:
                raise Conflict("a personal workspace cannot be deleted")

        await self.in_store(check)
        await self.refuse_if_running(ws_id)
        await self.in_store(lambda store: store.delete(ws_id))
        self.sync_group(ws_id)
        await self.unix_groups().remove_workspace(ws_id)
        self.set_status(204)
        self.finish()


class MembersAPI(QuotaAPIHandler):
    async def get(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        items = await self.in_store(lambda store: [member_json(m) for m in store.members(store.get(ws_id)[0])])
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))

    async def post(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        body = self.json_body()
        username = domain.validate_username(body.get("username"))
        new_role = domain.validate_role(body.get("role", domain.MEMBER))

        def check(store: Workspaces) -> bool:
            ws, role = store.get(ws_id)
            domain.check_member_change(store.actor, role, username, None, new_role, 2)
            return store.role_in(ws, username) is not None

        # the hub is asked between two database calls, never while holding a session
        already = await self.in_store(check)
        if not already and not await self.settings["hub_api"].user_exists(username):
            raise BadRequest(f"there is no user named {params.echo(username)}")
        m = await self.in_store(lambda store: member_json(store.add_member(ws_id, username, new_role)))
        self.sync_group(ws_id)
        self.write_json(m, 201)


class MemberAPI(QuotaAPIHandler):
    async def get(self, ws_id, username):
        ws_id = self.id_arg(ws_id, "workspace id")
        self.write_json(await self.in_store(lambda store: member_json(store.member(store.get(ws_id)[0], username))))

    async def patch(self, ws_id, username):
        ws_id = self.id_arg(ws_id, "workspace id")
        body = self.json_body()
        if "role" not in body:
            raise BadRequest("nothing to change: send {\"role\": ...}")
        m = await self.in_store(lambda store: member_json(store.change_member(ws_id, username, body["role"])))
        self.write_json(m)

    async def delete(self, ws_id, username):
        """Remove a member: their servers in this workspace stop and they leave its unix
        group first, so a removed member keeps no access (from a running server, a terminal
        or an SSH session) to the workspace's files."""
        ws_id = self.id_arg(ws_id, "workspace id")
        await self.in_store(lambda store: store.check_remove_member(ws_id, username) and None)
        # the hub is asked between two database calls, never while holding a session
        await self.revoke_access(ws_id, username)
        await self.in_store(lambda store: store.remove_member(ws_id, username))
        self.sync_group(ws_id)
        self.set_status(204)
        self.finish()


class ProjectsAPI(QuotaAPIHandler):
    async def get(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        offset, limit = self.page_args()

        def page(store: Workspaces):
            items, total = store.projects(store.get(ws_id)[0], offset, limit)
            return [project_json(p) for p in items], total

        items, total = await self.in_store(page)
        self.write_json(self.paginated(items, offset, limit, total))

    async def post(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        body = self.json_body()
        p = await self.in_store(lambda store: project_json(store.create_project(ws_id, body.get("name"))))
        self.write_json(p, 201)


class ProjectAPI(QuotaAPIHandler):
    async def get(self, ws_id, project_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        project_id = self.id_arg(project_id, "project id")
        self.write_json(await self.in_store(
            lambda store: project_json(store.project_by_id(store.get(ws_id)[0], project_id))))

    async def patch(self, ws_id, project_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        project_id = self.id_arg(project_id, "project id")
        body = self.json_body()
        if "name" not in body:
            raise BadRequest("nothing to change: send {\"name\": ...}")
        p = await self.in_store(lambda store: project_json(store.rename_project(ws_id, project_id, body["name"])))
        self.write_json(p)

    async def delete(self, ws_id, project_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        project_id = self.id_arg(project_id, "project id")
        await self.in_store(
            lambda store: store.project_by_id(store.get(ws_id, domain.MANAGE_PROJECTS)[0], project_id) and None)
        await self.refuse_if_running(ws_id, project_id)
        await self.in_store(lambda store: store.delete_project(ws_id, project_id))
        self.set_status(204)
        self.finish()


class AdminWorkspacesAPI(QuotaAPIHandler):
    """Every workspace with its members (hub admins: the hub's admin console reads it).
    ``?search=`` matches a part of a workspace's or a member's name, ``?member=NAME``
    (repeatable) keeps the workspaces those users belong to."""

    async def get(self):
        offset, limit = self.page_args()
        await self.require_hub_admin(self.acting_user())
        search = (self.get_query_argument("search", "") or "").strip()
        if len(search) > domain.MAX_NAME:
            raise BadRequest(f"search is at most {domain.MAX_NAME} characters (got {len(search)})")
        members = tuple(dict.fromkeys(m.strip() for m in self.get_query_arguments("member") if m.strip()))
        if len(members) > MAX_MEMBER_FILTER:
            raise BadRequest(f"name at most {MAX_MEMBER_FILTER} members at once (got {len(members)})")

        def page(store: Workspaces):
            rows, total = store.every(search, members, offset, limit)
            ids = [ws.id for ws in rows]
            people, projects = store.members_of(ids), store.project_counts(ids)
            return [admin_workspace_json(ws, people[ws.id], projects[ws.id]) for ws in rows], total

        items, total = await self.in_store(page)
        self.write_json(self.paginated(items, offset, limit, total))

    async def require_hub_admin(self, actor: str) -> None:
        if not await self.settings["hub_api"].is_admin(actor):
            raise Forbidden("only hub administrators may list every workspace")


class AdminWorkspaceAPI(AdminWorkspacesAPI):
    """One workspace with its members and projects, for hub admins (no membership needed)."""

    async def get(self, ws_id):
        ws_id = self.id_arg(ws_id, "workspace id")
        await self.require_hub_admin(self.acting_user())

        def one(store: Workspaces):
            ws, _ = store.view(ws_id, hub_admin=True)
            item = admin_workspace_json(ws, store.members(ws), store.projects(ws, 0, 0)[1])
            item["projects"] = [project_json(p) for p in store.projects(ws, 0, 10_000)[0]]
            return item

        self.write_json(await self.in_store(one))


class ResolveAPI(QuotaAPIHandler):
    """The workspace and project of a request: ``workspace_id``/``project_id`` by id,
    ``workspace``/``project`` by name among the user's own workspaces; an id wins over a
    name, and nothing given means the personal workspace / project "default"."""

    async def get(self):
        ws_id = params.optional(self.get_query_argument("workspace_id", None), "workspace_id")
        pr_id = params.optional(self.get_query_argument("project_id", None), "project_id")
        ws_name = params.ref(self.get_query_argument("workspace", None), "workspace")
        pr_name = params.ref(self.get_query_argument("project", None), "project")

        def resolve(store: Workspaces):
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
            return {"workspace": {"id": ws.id, "name": ws.name, "personal": ws.personal,
                                  "max_runtime_minutes": ws.max_runtime_minutes, **preset_limits_json(ws)},
                    "project": {"id": p.id, "name": p.name}}

        self.write_json(await self.in_store(resolve))


# -- HTML pages ------------------------------------------------------------------------
class QuotaPage(QuotaMixin, PageHandler):
    pass


class IndexPage(QuotaPage):
    async def get(self):
        if await self.login_or_user() is None:
            return

        def listing(store: Workspaces):
            rows, _ = store.mine(0, 10_000)
            items = []
            for ws, role in rows:
                item = workspace_json(ws, role)
                item["project_count"] = store.projects(ws, 0, 0)[1]
                items.append(item)
            return items

        items = await self.in_store(listing)
        self.finish(self.render_page("index.html", workspaces=items, actor=self.acting_user()))


class WorkspacePage(QuotaPage):
    async def get(self, ws_id):
        if await self.login_or_user() is None:
            return
        ws_id = self.id_arg(ws_id, "workspace id")
        actor = self.acting_user()
        # asked of the hub on every view: admin rights can be granted or revoked at any time
        hub_admin = await self.settings["hub_api"].is_admin(actor)

        def view(store: Workspaces):
            ws, role = store.view(ws_id, hub_admin)
            return {"ws": workspace_json(ws, role), "role": role,
                    "projects": [project_json(p) for p in store.projects(ws, 0, 10_000)[0]],
                    "members": [member_json(m) for m in store.members(ws)]}

        page = await self.in_store(view)
        perms = domain.PERMISSIONS.get(page["role"], frozenset())
        self.finish(self.render_page(
            "workspace.html",
            hub_admin=hub_admin,
            preset_names=list(self.settings["preset_names"]),
            can={p: p in perms for p in (domain.RENAME, domain.DELETE, domain.MANAGE_MEMBERS,
                                         domain.MANAGE_PROJECTS, domain.CREATE_PROJECT)},
            roles=domain.ROLES,
            actor=actor,
            **page,
        ))
