"""The quota service's calls to the hub REST API (with its own JUPYTERHUB_API_TOKEN).

- a JupyterHub group ``ws-<id>`` per workspace mirrors its members (best effort: failures
  are logged and never fail the request that caused them);
- the running servers (their user_options carry workspace_id/project_id), so a workspace
  or project is not deleted under a running server;
- whether a user exists, before inviting them;
- stopping a removed member's servers in the workspace they left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import httpx

from gemhub.services.common.client import ssl_context
from gemhub.services.common.errors import Unavailable

PAGINATION = "application/jupyterhub-pagination+json"


def group_name(ws_id: int) -> str:
    return f"ws-{ws_id}"


class HubAPI:
    def __init__(self, api_url: str | None = None, token: str | None = None, timeout: float = 10,
                 log: logging.Logger | None = None):
        self.log = log or logging.getLogger(__name__)
        self.api_url = (api_url or os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")).rstrip("/")
        self.token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.timeout = timeout
        # a workspace's lock lives while a sync of it runs or waits (bounded by those)
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    async def _request(self, method: str, path: str, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {self.token}"
        async with httpx.AsyncClient(timeout=self.timeout, verify=ssl_context()) as client:
            return await client.request(method, f"{self.api_url}{path}", headers=headers, **kw)

    async def _user(self, name: str) -> dict | None:
        """The hub's user model, None when there is no such user."""
        try:
            r = await self._request("GET", f"/users/{quote(name, safe='')}")
        except httpx.HTTPError as e:
            raise Unavailable(f"cannot reach the hub to look up user {name!r}: {e}") from None
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise Unavailable(f"the hub answered {r.status_code} looking up user {name!r}")
        return r.json()

    async def user_exists(self, name: str) -> bool:
        return await self._user(name) is not None

    async def is_admin(self, name: str) -> bool:
        """Whether ``name`` is a hub administrator (asked of the hub, never taken from the caller)."""
        user = await self._user(name)
        return bool(user and user.get("admin"))

    async def running_servers(self) -> list[dict]:
        """[{user, server, user_options}] of every active (running or starting) server."""
        out: list[dict] = []
        offset = 0
        try:
            while True:
                r = await self._request("GET", "/users", params={"state": "active", "offset": offset, "limit": 200},
                                        headers={"Accept": PAGINATION})
                if r.status_code != 200:
                    raise Unavailable(f"the hub answered {r.status_code} listing servers")
                data = r.json()
                users = data["items"] if isinstance(data, dict) else data
                for u in users:
                    for sname, s in (u.get("servers") or {}).items():
                        out.append({"user": u["name"], "server": sname, "user_options": s.get("user_options") or {}})
                nxt = data.get("_pagination", {}).get("next") if isinstance(data, dict) else None
                if not nxt:
                    return out
                offset = nxt["offset"]
        except httpx.HTTPError as e:
            raise Unavailable(f"cannot reach the hub to check running servers: {e}") from None

    async def stop_server(self, user: str, server: str = "") -> tuple[bool, str]:
        """Ask the hub to stop a server (preemption of a notebook; needs the ``servers`` scope)."""
        path = f"/users/{quote(user, safe='')}/server" + (f"s/{quote(server, safe='')}" if server else "")
        try:
            r = await self._request("DELETE", path)
        except httpx.HTTPError as e:
            return False, f"cannot reach the hub: {e}"
        if r.status_code in (202, 204):
            return True, f"the hub is stopping {user}/{server}"
        return False, f"the hub answered {r.status_code}: {r.text[:200]}"

    async def stop_servers(self, user: str, workspace_id: int) -> list[str]:
        """Stop every server of ``user`` that runs in workspace ``workspace_id`` (the hub
        stops it in the background); returns their names. Raises Unavailable."""
        model = await self._user(user)
        stopped = []
        for sname, s in ((model or {}).get("servers") or {}).items():
            opts = s.get("user_options") or {}
            if str(opts.get("workspace_id")) != str(workspace_id):
                continue
            path = f"/users/{quote(user, safe='')}/" + (f"servers/{quote(sname, safe='')}" if sname else "server")
            try:
                r = await self._request("DELETE", path)
            except httpx.HTTPError as e:
                raise Unavailable(f"cannot reach the hub to stop {user}'s server: {e}") from None
            if r.status_code not in (202, 204, 404):
                raise Unavailable(f"the hub answered {r.status_code} stopping {user}'s server {sname!r}")
            stopped.append(sname)
        return stopped

    async def sync_group(self, ws_id: int, members: Callable[[], Awaitable[list[str] | None]]) -> None:
        """Make group ws-<id> hold exactly ``await members()`` (None: the workspace is gone:
        delete it).

        ``members`` is read inside a per-workspace lock so concurrent syncs apply in order.
        Best effort: errors are logged, never raised.
        """
        lock = self._locks.setdefault(ws_id, asyncio.Lock())
        name = quote(group_name(ws_id), safe="")
        async with lock:
            try:
                wanted = await members()
                if wanted is None:
                    r = await self._request("DELETE", f"/groups/{name}")
                    if r.status_code not in (204, 404):
                        self.log.warning("deleting hub group %s: %s %s", name, r.status_code, r.text[:200])
                    return
                r = await self._request("GET", f"/groups/{name}")
                if r.status_code == 404:
                    r = await self._request("POST", f"/groups/{name}", json={"users": []})
                    if r.status_code not in (201, 409):
                        self.log.warning("creating hub group %s: %s %s", name, r.status_code, r.text[:200])
                        return
                    current: set[str] = set()
                elif r.status_code == 200:
                    current = set(r.json().get("users") or [])
                else:
                    self.log.warning("reading hub group %s: %s %s", name, r.status_code, r.text[:200])
                    return
                add = sorted(set(wanted) - current)
                remove = sorted(current - set(wanted))
                if add:
                    r = await self._request("POST", f"/groups/{name}/users", json={"users": add})
                    if r.status_code != 200:
                        self.log.warning("adding %s to hub group %s: %s %s", add, name, r.status_code, r.text[:200])
                if remove:
                    r = await self._request("DELETE", f"/groups/{name}/users", json={"users": remove})
                    if r.status_code != 200:
                        self.log.warning("removing %s from hub group %s: %s %s", remove, name, r.status_code,
                                    r.text[:200])
            except Exception as e:  # best effort by design: the group only mirrors the DB
                self.log.warning("syncing hub group %s failed: %s", name, e)


def spawn_background(coro: Awaitable) -> None:
    """Run ``coro`` without awaiting it (errors are logged by the coroutine itself)."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task] = set()


async def wait_background() -> None:
    """Wait for every background task started so far (tests; nothing else needs to)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)
