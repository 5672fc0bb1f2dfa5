"""The admin console's page (``/hub/gemhub/admin[/<tab>[/<path>]]``), registered through
``JupyterHub.extra_handlers`` by the configurer: hub admins only; GET shows a tab, a form
POST runs the tab's action and redirects back with its notice. Thin: the tabs do the work
(:mod:`gemhub.hub_config.console`)."""

from __future__ import annotations

from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.escape import url_escape

from gemhub.hub_config.console.directory import HubDirectory
from gemhub.hub_config.console.tabs import (
    ConsoleContext,
    ConsoleError,
    ConsoleTab,
    Form,
    Query,
    ServiceEndpoint,
    load_tabs,
)
from gemhub.spawner.summary import AcceleratorLabels
from gemhub.spawner.local.devices import build_registry, hub_devices
from gemhub.spawner.presets import Catalog

TABS_SETTING = "gemhub_console_tabs"


class ConsolePage(BaseHandler):
    def initialize(self, state_dir: str, accelerators: dict, presets: list, default_preset: str, runtime: str):
        self.state_dir, self.accelerators, self.runtime = state_dir, accelerators, runtime
        self.presets, self.default_preset = presets, default_preset

    # -- what every request needs --------------------------------------------------------
    @property
    def tabs(self) -> list[ConsoleTab]:
        """Loaded once per hub process (entry points do not change while it runs)."""
        if TABS_SETTING not in self.settings:
            self.settings[TABS_SETTING] = load_tabs()
        return self.settings[TABS_SETTING]

    @property
    def console_url(self) -> str:
        return url_path_join(self.hub.base_url, "gemhub/admin")

    def require_admin(self) -> None:
        if not self.current_user.admin:
            raise web.HTTPError(403, "only hub administrators may use the admin console")

    def find_tab(self, name: str) -> ConsoleTab:
        for tab in self.tabs:
            if tab.name == name:
                return tab
        raise web.HTTPError(404, f"the admin console has no tab {name[:40]!r}")

    def context(self, path: str | None, query: Query) -> ConsoleContext:
        devices = hub_devices(self.state_dir, self.accelerators, self.log) if self.runtime == "local" else None
        catalog = Catalog.from_config(self.presets, self.default_preset, build_registry(self.accelerators))
        labels = AcceleratorLabels(catalog, devices)
        services = {name: ServiceEndpoint(name, service.url.rstrip("/") + service.prefix, service.api_token,
                                          service.prefix)
                    for name, service in self.services.items() if service.url and service.api_token}
        return ConsoleContext(
            admin=self.current_user.name, query=query, path=path or "", hub=HubDirectory(self, labels),
            labels=labels, services=services, base_url=self.console_url, hub_url=self.hub.base_url,
            xsrf=self.xsrf_token.decode("ascii"), devices=devices)

    def query(self) -> Query:
        try:
            return Query.parse(self.get_query_argument("search", None), self.get_query_argument("offset", None),
                               self.get_query_argument("limit", None))
        except ConsoleError as e:
            raise web.HTTPError(e.status, e.message) from None

    async def page(self, tab: ConsoleTab, ctx: ConsoleContext, body: str = "", error: str = "") -> str:
        return await self.render_template(
            "gemhub-console.html", tabs=self.tabs, current=tab, ctx=ctx, body=body, error=error,
            notice=self.get_query_argument("notice", "")[:300])

    # -- GET: a tab ----------------------------------------------------------------------
    @web.authenticated
    async def get(self, tab_name: str | None = None, path: str | None = None):
        self.require_admin()
        if not tab_name:
            self.redirect(f"{self.console_url}/{self.tabs[0].name}" if self.tabs else self.hub.base_url)
            return
        tab = self.find_tab(tab_name)
        ctx = self.context(path, self.query())
        try:
            body = tab.render(ctx, await tab.view(ctx))
        except ConsoleError as e:
            self.set_status(e.status)
            self.finish(await self.page(tab, ctx, error=e.message))
            return
        self.finish(await self.page(tab, ctx, body=body))

    # -- POST: an action -----------------------------------------------------------------
    @web.authenticated
    async def post(self, tab_name: str | None = None, path: str | None = None):
        self.require_admin()
        tab = self.find_tab(tab_name or "")
        ctx = self.context(path, Query())
        form = Form({k: [v.decode("utf-8", "replace") for v in values]
                     for k, values in self.request.body_arguments.items() if k != "_xsrf"})
        try:
            notice = await tab.act(ctx, form)
        except ConsoleError as e:
            self.log.info("admin console: %s %s refused: %s", tab.name, form.get("action"), e.message)
            try:  # the tab as it is, with the reason above it
                body = tab.render(ctx, await tab.view(ctx))
            except ConsoleError:
                body = ""
            self.set_status(e.status)
            self.finish(await self.page(tab, ctx, body=body, error=e.message))
            return
        back = form.get("next", "")
        if not back.startswith(self.console_url + "/") or "//" in back[len(self.console_url):]:
            back = ctx.url(tab.name, ctx.path)
        self.redirect(f"{back}{'&' if '?' in back else '?'}notice={url_escape(notice)}", status=303)
