"""The quota service: workspaces, projects and members (``python -m gemhub.services.quota.app``)."""

from __future__ import annotations

from pathlib import Path

from traitlets import Any, List, Unicode, default

from gemhub.services.common.app import GemService
from gemhub.services.common.caches import SeenNames
from gemhub.services.common.openapi import ID, PAGE, OpenAPIRegistry, nullable

from . import handlers as h
from .hubapi import HubAPI
from .models import AuditEvent
from .unixgroups import WorkspaceGroups

HERE = Path(__file__).resolve().parent

NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": "^[^/]*$"}
ROLE = {"type": "string", "enum": ["owner", "admin", "member"]}
WORKSPACE = {"type": "object", "required": ["id", "name", "role"], "properties": {
    "id": ID, "name": {"type": "string"}, "personal": {"type": "boolean"},
    # null: a hub admin who is not a member (setting the workspace's limits)
    "role": nullable(ROLE), "created": {"type": "string"},
    "max_runtime_minutes": {"type": ["integer", "null"], "minimum": 1, "maximum": 525600},
    "allowed_presets": {"type": ["array", "null"], "items": {"type": "string"}},
    "custom_spec": {"type": "boolean"}}}
PROJECT = {"type": "object", "properties": {
    "id": ID, "name": {"type": "string"}, "workspace_id": ID, "created": {"type": "string"}}}
MEMBER = {"type": "object", "properties": {
    "username": {"type": "string"}, "role": ROLE, "created": {"type": "string"}}}


def page_of(schema: dict) -> dict:
    return {"type": "object", "properties": {"items": {"type": "array", "items": schema},
                                             "_pagination": {"type": "object"}}}


class QuotaService(GemService):
    name = "quota"
    description = "GemHub quota service: workspaces, projects and members"

    migrations_dir = HERE / "migrations"
    templates_dir = HERE / "templates"
    audit_model = AuditEvent

    aliases = {**GemService.aliases, "port": "QuotaService.port"}

    hub_api = Any(help="Client of the hub REST API (default: HubAPI with the service's own token).").tag(config=True)

    preset_names = List(
        Unicode(), help="Names of the configured spec presets (workspaces may be limited to some of them)."
    ).tag(config=True)

    unix_prefix = Unicode(
        "", help="Prefix of the per-user unix accounts of the local runtime (spawner.user_prefix): a "
        "member removed from a workspace leaves its unix group gemws-<id>. Empty: no unix groups "
        "(the kubernetes runtime).",
    ).tag(config=True)

    @default("hub_api")
    def _default_hub_api(self):
        return HubAPI(log=self.log)

    def api_handlers(self):
        # ids are parsed (and bounded) by the handlers: any segment reaches them
        ws, pr = r"workspaces/([^/]+)", r"projects/([^/]+)"
        return [
            ("", h.IndexPage),
            (ws, h.WorkspacePage),
            ("api/v1/workspaces", h.WorkspacesAPI),
            (f"api/v1/{ws}", h.WorkspaceAPI),
            (f"api/v1/{ws}/members", h.MembersAPI),
            (rf"api/v1/{ws}/members/([^/]+)", h.MemberAPI),
            (f"api/v1/{ws}/projects", h.ProjectsAPI),
            (f"api/v1/{ws}/{pr}", h.ProjectAPI),
            ("api/v1/resolve", h.ResolveAPI),
            ("api/v1/admin/workspaces", h.AdminWorkspacesAPI),
            (f"api/v1/admin/{ws}", h.AdminWorkspaceAPI),
        ]

    def extra_settings(self):
        return {"state_dir": self.state_dir, "hub_api": self.hub_api, "seen_users": SeenNames(),
                "preset_names": list(self.preset_names),
                "unix_groups": WorkspaceGroups(self.unix_prefix, self.log)}

    def openapi(self) -> OpenAPIRegistry:
        r = OpenAPIRegistry("GemHub quota service")
        wsid = "/workspaces/{ws_id}"
        r.add("get", "/workspaces", "The caller's workspaces", response=page_of(WORKSPACE),
              query={**PAGE, "include_projects": {"type": "boolean"}})
        r.add("post", "/workspaces", "Create a workspace (the caller becomes its owner)", status=201,
              request={"type": "object", "required": ["name"], "properties": {"name": NAME}},
              response=WORKSPACE, errors=(409,))
        r.add("get", wsid, "A workspace", response=WORKSPACE)
        r.add("patch", wsid, "Rename a workspace; hub admins also set allowed_presets (null = all), "
              "custom_spec and max_runtime_minutes (null = no limit)",
              response=WORKSPACE, errors=(409,),
              request={"type": "object", "properties": {
                  "name": NAME, "allowed_presets": {"type": ["array", "null"], "items": {"type": "string"}},
                  "custom_spec": {"type": "boolean"},
                  "max_runtime_minutes": {"type": ["integer", "null"], "minimum": 1, "maximum": 525600}}})
        r.add("delete", wsid, "Delete a workspace (refused while a server of it runs)", status=204,
              errors=(409,))
        r.add("get", f"{wsid}/members", "Members of a workspace", response=page_of(MEMBER))
        r.add("post", f"{wsid}/members", "Invite a user", status=201, response=MEMBER, errors=(409,),
              request={"type": "object", "required": ["username"],
                       "properties": {"username": {"type": "string", "minLength": 1}, "role": ROLE}})
        r.add("get", wsid + "/members/{username}", "A member", response=MEMBER)
        r.add("patch", wsid + "/members/{username}", "Change a member's role", response=MEMBER, errors=(409,),
              request={"type": "object", "required": ["role"], "properties": {"role": ROLE}})
        r.add("delete", wsid + "/members/{username}", "Remove a member: their servers in the workspace "
              "stop and their account leaves its unix group", status=204, errors=(409,))
        r.add("get", f"{wsid}/projects", "Projects of a workspace", response=page_of(PROJECT), query=PAGE)
        r.add("post", f"{wsid}/projects", "Create a project", status=201, response=PROJECT, errors=(409,),
              request={"type": "object", "required": ["name"], "properties": {"name": NAME}})
        r.add("get", wsid + "/projects/{project_id}", "A project", response=PROJECT)
        r.add("patch", wsid + "/projects/{project_id}", "Rename a project", response=PROJECT, errors=(409,),
              request={"type": "object", "required": ["name"], "properties": {"name": NAME}})
        r.add("delete", wsid + "/projects/{project_id}", "Delete a project (refused while a server of it runs)",
              status=204, errors=(409,))
        admin_ws = {**WORKSPACE, "properties": {**WORKSPACE["properties"],
                                                "members": {"type": "array", "items": MEMBER},
                                                "project_count": {"type": "integer"}}}
        r.add("get", "/admin/workspaces", "Every workspace with its members (hub admins)",
              response=page_of(admin_ws),
              query={**PAGE, "search": {"type": "string", "maxLength": 63},
                     "member": {"type": "array", "items": {"type": "string"}}})
        r.add("get", "/admin" + wsid, "A workspace with its members and projects (hub admins)",
              response={**admin_ws, "properties": {**admin_ws["properties"],
                                                   "projects": {"type": "array", "items": PROJECT}}})
        r.add("get", "/resolve", "Resolve a user's workspace/project references (the spawner's call): "
              "ids by id, names among the user's own workspaces; ids win",
              query={"user": {"type": "string"}, "workspace_id": ID, "project_id": ID,
                     "workspace": {"type": "string"}, "project": {"type": "string"}},
              response={"type": "object", "required": ["workspace", "project"], "properties": {
                  "workspace": {"type": "object", "properties": {"id": ID, "name": {"type": "string"}}},
                  "project": {"type": "object", "properties": {"id": ID, "name": {"type": "string"}}}}})
        return r


main = QuotaService.launch_instance

if __name__ == "__main__":
    main()
