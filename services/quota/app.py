"""The quota service: workspaces, projects, members, quotas and the resource ledger
(``python -m gemhub.services.quota.app``)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import yaml
from traitlets import Any, Dict, List, Unicode, default

from gemhub.services.common.app import GemService
from gemhub.services.common.caches import SeenNames
from gemhub.services.common.openapi import ID, PAGE, OpenAPIRegistry, nullable

from . import handlers as h
from . import hooks
from . import ledger_admin as la
from . import ledger_handlers as lh
from .hubapi import HubAPI, spawn_background
from .ledger_config import LedgerConfig
from .ledgerdb import LedgerRunner, ledger_engine
from .models import AuditEvent, LedgerEvent, StopHook
from .openapi_ledger import add_ledger_operations
from .reconcile import Reconciler
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
    description = "GemHub quota service: workspaces, projects, members, quotas and the resource ledger"

    migrations_dir = HERE / "migrations"
    templates_dir = HERE / "templates"
    audit_model = AuditEvent

    aliases = {**GemService.aliases, "port": "QuotaService.port"}

    hub_api = Any(help="Client of the hub REST API (default: HubAPI with the service's own token).").tag(config=True)

    preset_names = List(
        Unicode(), help="Names of the configured spec presets (workspaces may be limited to some of them; "
        "default: the names of the platform's presets)."
    ).tag(config=True)

    platform = Dict(
        help="What the ledger knows about the platform: runtime, presets, accelerators, priority "
        "levels, preemptible kinds, borrowing threshold, reconciliation period, kueue "
        "(gemhub.services.quota.ledger_config). Default: the JSON in $GEMHUB_QUOTA_PLATFORM.",
    ).tag(config=True)

    test_pause_file = Unicode(
        "", help="Tests only: while this file exists, an admission waits inside its transaction "
        "(to crash the service mid-admission). Default: $GEMHUB_TEST_ADMISSION_PAUSE.",
    ).tag(config=True)

    @default("test_pause_file")
    def _default_test_pause_file(self):
        return os.environ.get("GEMHUB_TEST_ADMISSION_PAUSE", "")

    platform_file = Unicode(
        "", help="A gemhub.yaml to derive `platform` from when $GEMHUB_QUOTA_PLATFORM is not set "
        "(the Helm chart mounts the hub's own).",
    ).tag(config=True)

    @default("platform")
    def _default_platform(self):
        raw = os.environ.get("GEMHUB_QUOTA_PLATFORM", "")
        if raw:
            return json.loads(raw)
        if self.platform_file:
            from gemhub.hub_config import configurer, services

            with open(self.platform_file) as f:
                cfg = configurer.merge_platform(yaml.safe_load(f) or {}, {})
            # the same JSON the local runtime's hub puts in $GEMHUB_QUOTA_PLATFORM
            return json.loads(json.dumps(services.quota_platform(cfg)))
        return {}

    @default("preset_names")
    def _default_preset_names(self):
        return [p["name"] for p in self.platform.get("presets") or []]

    unix_prefix = Unicode(
        "", help="Prefix of the per-user unix accounts of the local runtime (spawner.user_prefix): a "
        "member removed from a workspace leaves its unix group gemws-<id>. Empty: no unix groups "
        "(the kubernetes runtime).",
    ).tag(config=True)

    @default("hub_api")
    def _default_hub_api(self):
        return HubAPI(log=self.log)

    # -- the ledger ----------------------------------------------------------------------
    def init_db(self):
        super().init_db()
        self.ledger_config = LedgerConfig.from_json(self.platform, self.state_dir)
        self.ledger = LedgerRunner(ledger_engine(self.db_url), self.ledger_config, AuditEvent)
        self.ledger.on_stops = self.deliver_stops
        self.import_old_marks()

    def import_old_marks(self) -> None:
        """Maintenance marks the hub kept in <state>/devices/maintenance.json before the
        ledger held them: imported once, the file renamed so it is never read again."""
        path = Path(self.state_dir) / "devices" / "maintenance.json"
        if not path.exists():
            return
        data = json.loads(path.read_text())
        marks = [("device", d) for d in data.get("devices", [])] + [("node", n) for n in data.get("nodes", [])]

        def move(ledger):
            for target, name in marks:
                ledger.set_mark(target, name, True)

        self.ledger.run_sync(move, "upgrade")
        path.rename(path.with_suffix(".json.imported"))
        self.log.info("imported %d maintenance mark(s) from %s", len(marks), path)

    def deliver_stops(self, stops) -> None:
        """Send preemption requests to the workloads' owners (after the ledger committed)."""
        for stop in stops:
            spawn_background(self._deliver(stop))

    async def _deliver(self, stop) -> None:
        adm = stop.admission
        loop = asyncio.get_running_loop()

        def hook_of():
            with self.sessionmaker() as s:
                row = s.get(StopHook, stop.kind)
                return (row.url, row.token) if row else None

        hook = await loop.run_in_executor(None, hook_of)
        if hook is not None:
            ok, what = await hooks.preempt(hook[0], hook[1], adm, stop.reason)
        elif stop.kind == "notebook":
            user, _, server = adm["holder"].partition(":")[2].partition("/")
            ok, what = await self.hub_api.stop_server(user, server)
        else:
            ok, what = False, f"no stop hook is registered for {stop.kind}"
        (self.log.info if ok else self.log.warning)("preemption of admission %s: %s", adm["id"], what)

        def record():
            with self.sessionmaker() as s:
                s.add(LedgerEvent(admission_id=adm["id"], event="preempt-sent" if ok else "preempt-failed",
                                  actor="quota", detail={"result": what}))
                s.commit()

        await loop.run_in_executor(None, record)

    async def sync_kueue(self) -> None:
        """Make the cluster's Kueue objects equal to the quotas (kueue.enabled only); a
        failure is logged and the next change or reconciliation cycle tries again."""
        if not self.ledger_config.kueue_enabled:
            return
        from . import kube_sync, kueue

        def read():
            with self.sessionmaker() as s:
                return kube_sync.workspaces_for_kueue(s)

        if not hasattr(self, "_kueue_lock"):
            self._kueue_lock = asyncio.Lock()
        async with self._kueue_lock:
            workspaces = await asyncio.get_running_loop().run_in_executor(None, read)
            config = self.ledger_config
            objects = kueue.render(workspaces, config.priority_levels, config.registry, config.namespace)
            try:
                counts = await kube_sync.apply(objects, config.namespace)
            except Exception as e:
                self.log.warning("kueue: could not apply the quotas: %s", e)
                return
        if counts["created"] or counts["deleted"]:
            self.log.info("kueue: %(created)d created, %(replaced)d replaced, %(deleted)d deleted", counts)

    async def serve(self):
        spawn_background(self.sync_kueue())
        reconciler = Reconciler(self)
        task = asyncio.ensure_future(reconciler.loop())
        try:
            await super().serve()
        finally:
            task.cancel()
            self.ledger.close()

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
            ("quotas", lh.QuotasPage),
            ("api/v1/admissions", lh.AdmissionsAPI),
            (r"api/v1/admissions/([^/]+)", lh.AdmissionAPI),
            (r"api/v1/admissions/([^/]+)/events", lh.AdmissionEventsAPI),
            ("api/v1/quotas", lh.QuotasOverviewAPI),
            (r"api/v1/workspaces/([^/]+)/quota", lh.QuotaAPI),
            (r"api/v1/workspaces/([^/]+)/usage", lh.UsageAPI),
            (r"api/v1/workspaces/([^/]+)/members/([^/]+)/quota", lh.PersonalQuotaAPI),
            ("api/v1/priorities", la.PrioritiesAPI),
            (r"api/v1/priorities/([^/]+)", la.PriorityAPI),
            ("api/v1/hooks", la.HooksAPI),
            (r"api/v1/hooks/([^/]+)", la.HookAPI),
            ("api/v1/devices", la.DevicesAPI),
        ]

    def extra_settings(self):
        return {"state_dir": self.state_dir, "hub_api": self.hub_api, "seen_users": SeenNames(),
                "preset_names": list(self.preset_names), "ledger": self.ledger,
                "ledger_config": self.ledger_config, "test_pause_file": self.test_pause_file,
                "quotas_changed": lambda: spawn_background(self.sync_kueue()),
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
        add_ledger_operations(r)
        return r


main = QuotaService.launch_instance

if __name__ == "__main__":
    main()
