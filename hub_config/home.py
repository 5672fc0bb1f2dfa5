"""The hub's home page (``/hub/home``): where you are on the platform.

JupyterHub renders ``home.html`` itself; GemHub's template (hub_config/templates) asks
``gemhub_home``, a :class:`HomeView` that ``JupyterHub.template_vars`` makes for the page's
user, for what it shows (templates render asynchronously, so the async methods are
awaited by the template):

- :meth:`HomeView.workspaces`: the user's workspaces, their roles and projects;
- :meth:`HomeView.servers`: the default server and every named one, with workspace,
  project (named from the workspaces), preset, device, run time and the run-time limit's
  countdown;
- :meth:`HomeView.pages`: links to the services' pages and, for admins, the console.

The page is a list of cards (``home.html`` includes ``home/<card>.html`` in order). A later
issue adds one (balance, jobs) by writing its card template, including it there, and
giving HomeView the method that reads its data from its service's API.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from gemhub.spawner.summary import ServerSummary, status_of, summarize, with_names

# service name -> what its page is called on the home page (others keep their name)
PAGE_TITLES = {"quota": "Workspaces and projects", "data": "Datasets and models", "ssh": "SSH keys and password"}


@dataclass(frozen=True)
class Link:
    name: str
    title: str
    url: str


class HomeView:
    """``gemhub_home`` in the hub's templates: ``HomeView(user)`` (user may be None)."""

    def __init__(self, user: Any):
        self.user = user

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def servers(self, workspaces: list[dict] | None = None) -> list[ServerSummary]:
        """The default server first, then the named ones by name, running or not; their
        workspace and project named from ``workspaces`` (servers keep only the ids)."""
        user = self.user
        if user is None:
            return []
        spawner = user.spawner  # the default server: always listed (made here if it is new)
        if not hasattr(spawner, "accelerator_labels"):  # not a GemHub spawner
            return []
        labels = spawner.accelerator_labels()
        out = []
        for orm_spawner in sorted(user.orm_user.orm_spawners.values(), key=lambda s: (s.name != "", s.name)):
            wrapper = user.spawners.get(orm_spawner.name)
            if wrapper is not None:
                status = status_of(wrapper.active, wrapper.ready, wrapper.pending)
            else:
                status = "running" if orm_spawner.server is not None else "stopped"
            server = summarize(user.name, orm_spawner.name, status=status, state=orm_spawner.state,
                               user_options=orm_spawner.user_options, started=orm_spawner.started, labels=labels)
            out.append(with_names(server, workspaces or []))
        return out

    async def workspaces(self) -> dict[str, Any]:
        """{"items": [workspace with role and projects], "error": None} or the reason they
        cannot be listed right now (the page still shows everything else)."""
        if self.user is None:
            return {"items": [], "error": None}
        try:
            return {"items": await self.user.spawner.list_workspaces(), "error": None}
        except Exception as e:
            # the spawner turns the quota service's refusals and outages into errors with a
            # message for people: say it on the page; anything else is a bug, not an outage
            message = getattr(e, "jupyterhub_message", None)
            if message is None:
                raise
            return {"items": [], "error": message}

    def pages(self, services: list | None) -> list[Link]:
        """The services' pages this user may open (JupyterHub's Services menu), with names a
        person understands."""
        return [Link(s.name, PAGE_TITLES.get(s.name, s.name), s.href) for s in services or ()]

    def service_page(self, services: list | None, name: str, path: str = "") -> str | None:
        """A page of service ``name`` if the user may open it (else None)."""
        for s in services or ():
            if s.name == name:
                return s.href.rstrip("/") + "/" + path
        return None

    def server_url(self, server: ServerSummary) -> str:
        return self.user.server_url(server.name)

    def spawn_url(self, base_url: str, server: ServerSummary) -> str:
        """Where the spawn page of this server is (the preset and workspace are chosen there)."""
        return f"{base_url}spawn/{self.user.escaped_name}" + (f"/{server.name}" if server.name else "")
