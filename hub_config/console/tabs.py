"""The admin console's extension point: :class:`ConsoleTab`, what a tab is given
(:class:`ConsoleContext`) and how tabs are found (:func:`load_tabs`). See the package
docstring for how a service adds its tab. No tornado import: the console's handler is
the only adapter.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping
from urllib.parse import urlencode

from markupsafe import Markup

if TYPE_CHECKING:
    from gemhub.hub_config.console.directory import HubDirectory
    from gemhub.spawner.summary import AcceleratorLabels

ENTRY_POINT_GROUP = "gemhub.console_tabs"
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SEARCH = 100
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")

log = logging.getLogger(__name__)


class ConsoleError(Exception):
    """A refusal the admin reads: HTTP ``status`` (4xx, or 503 when a service is down) and
    the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Query:
    """Search and paging of a list, as the admin asked (validated: bad input is a 400)."""

    search: str = ""
    offset: int = 0
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, search: str | None, offset: str | None, limit: str | None) -> "Query":
        search = (search or "").strip()
        if len(search) > MAX_SEARCH:
            raise ConsoleError(400, f"search is at most {MAX_SEARCH} characters (got {len(search)})")
        values = []
        for name, raw, default, low, high in (("offset", offset, 0, 0, 10**9),
                                              ("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)):
            if raw is None or raw == "":
                values.append(default)
                continue
            if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
                raise ConsoleError(400, f"{name} must be a whole number from {low} to {high}, not {raw[:20]!r}")
            values.append(int(raw))
        return cls(search, values[0], values[1])


class Form(Mapping[str, str]):
    """A POSTed form: ``form[name]`` is a field's (last) value, ``form.all(name)`` every
    value of a repeated field (checkboxes)."""

    def __init__(self, fields: Mapping[str, list[str]]):
        self._fields = {k: list(v) for k, v in fields.items() if v}

    def __getitem__(self, name: str) -> str:
        return self._fields[name][-1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def all(self, name: str) -> list[str]:
        return list(self._fields.get(name, ()))


@dataclass(frozen=True)
class ServiceEndpoint:
    """A hub service as the hub reaches it: ``base_url`` ends with its prefix
    (``http://127.0.0.1:PORT/services/quota/``); ``token`` is the service's own, with
    which calls may act for the admin (``?user=``); ``page`` is where browsers find it
    (``/services/quota/``)."""

    name: str
    base_url: str
    token: str
    page: str = ""


@dataclass
class ConsoleContext:
    admin: str
    query: Query
    path: str                                   # what follows the tab's name in the URL
    hub: "HubDirectory"
    labels: "AcceleratorLabels"
    services: Mapping[str, ServiceEndpoint]
    base_url: str                               # the console's URL (…/hub/gemhub/admin)
    hub_url: str                                # …/hub/
    xsrf: str
    devices: Any = None                         # LocalDevices on the local runtime, else None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    def service(self, name: str) -> ServiceEndpoint:
        try:
            return self.services[name]
        except KeyError:
            raise ConsoleError(503, f"the {name} service is not configured on this hub") from None

    def service_page(self, name: str, path: str = "") -> str:
        """A service's page for the admin's browser (``/services/quota/workspaces/7``)."""
        return self.service(name).page + path

    def url(self, tab: str, path: str = "", **params: Any) -> str:
        """A console URL; ``None`` and empty parameters are left out."""
        url = f"{self.base_url}/{tab}" + (f"/{path}" if path else "")
        kept = {k: v for k, v in params.items() if v not in (None, "")}
        return url + (f"?{urlencode(kept)}" if kept else "")

    def page_url(self, tab: str, offset: int) -> str:
        """The same list at another offset (search and limit kept)."""
        limit = self.query.limit if self.query.limit != DEFAULT_LIMIT else None
        return self.url(tab, self.path, search=self.query.search, offset=offset or None, limit=limit)


class ConsoleTab:
    """One tab of the admin console. Subclass it, set the class attributes, implement
    :meth:`view` (and :meth:`act` for forms), and register it under ``gemhub.console_tabs``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    order: ClassVar[int] = 100
    searchable: ClassVar[bool] = True
    templates_dir: ClassVar[Path] = TEMPLATES
    template: ClassVar[str] = ""

    async def view(self, ctx: ConsoleContext) -> Mapping[str, Any]:
        """The template variables for GET ``/hub/gemhub/admin/<name>/<ctx.path>``."""
        raise NotImplementedError

    async def act(self, ctx: ConsoleContext, form: Form) -> str:
        """Do what a form POSTed (``form["action"]``) and return the notice to show.
        Every tab can stop a server (action ``stop-server``, fields ``user``, ``server``)."""
        if form.get("action") == "stop-server":
            user, server = form.get("user", ""), form.get("server", "")
            await ctx.hub.stop_server(user, server)
            return f"Stopped {user}/{server}" if server else f"Stopped the default server of {user}"
        raise ConsoleError(400, f"the {self.title} tab has no action {form.get('action', '')[:40]!r}")

    def render(self, ctx: ConsoleContext, variables: Mapping[str, Any]) -> Markup:
        """The tab's body: its template with its variables and the console's helpers."""
        env = _environment(self.templates_dir)
        return Markup(env.get_template(self.template).render(ctx=ctx, tab=self, **variables))


_ENVIRONMENTS: dict[Path, Any] = {}


def _environment(templates_dir: Path):
    """One jinja2 environment per tab folder (templates are compiled once); the console's
    own folder comes second so every tab can import console-macros.html."""
    if templates_dir not in _ENVIRONMENTS:
        import jinja2

        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(templates_dir)),
                                      jinja2.FileSystemLoader(str(TEMPLATES))])
        _ENVIRONMENTS[templates_dir] = jinja2.Environment(loader=loader, autoescape=True)
    return _ENVIRONMENTS[templates_dir]


def check_tabs(tabs: list[ConsoleTab]) -> list[ConsoleTab]:
    """Tabs in display order; a bad or duplicate name is a programming error."""
    seen: set[str] = set()
    for tab in tabs:
        if not _NAME.match(tab.name) or not tab.title or not tab.template:
            raise ValueError(f"console tab {type(tab).__name__} needs a name (a-z, 0-9, -), a title and a template")
        if tab.name in seen:
            raise ValueError(f"two console tabs are named {tab.name!r}")
        seen.add(tab.name)
    return sorted(tabs, key=lambda t: (t.order, t.name))


def load_tabs(loader: Callable[[], Any] | None = None) -> list[ConsoleTab]:
    """Every tab registered under ``gemhub.console_tabs``, in display order. A tab that
    fails to load is logged and left out: one broken plugin must not close the console."""
    tabs = []
    for ep in (loader or (lambda: entry_points(group=ENTRY_POINT_GROUP)))():
        try:
            tabs.append(ep.load()())
        except Exception:
            log.exception("console tab %s (%s) could not be loaded; leaving it out", ep.name, ep.value)
    return check_tabs(tabs)
