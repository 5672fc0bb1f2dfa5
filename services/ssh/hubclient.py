"""The gateway's calls to the hub REST API, with the service's own token (JUPYTERHUB_API_TOKEN).

Scopes it needs (granted in hub_config/configurer.py): read:users:name and read:servers
(is a server running?), users:activity (an SSH session keeps its server from being culled
as idle) and, only with ``start_stopped``, servers (start a stopped server).
"""

from __future__ import annotations

import datetime
import logging
import os
from urllib.parse import quote

import httpx

from gemhub.services.common.client import ssl_context
from gemhub.services.common.errors import Unavailable


class HubClient:
    def __init__(self, api_url: str | None = None, token: str | None = None, timeout: float = 10,
                 log: logging.Logger | None = None):
        self.log = log or logging.getLogger(__name__)
        self.api_url = (api_url or os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")).rstrip("/")
        self.token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.client = httpx.AsyncClient(timeout=timeout, verify=ssl_context(),
                                        headers={"Authorization": f"token {self.token}"})

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _request(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            return await self.client.request(method, f"{self.api_url}{path}", **kw)
        except httpx.HTTPError as e:
            raise Unavailable(f"cannot reach the hub: {e}") from None

    async def server(self, user: str, server: str) -> dict | None:
        """The server model ({ready, pending, ...}), None when the user has no such server
        running; raises LookupError when there is no such hub user."""
        r = await self._request("GET", f"/users/{quote(user, safe='')}")
        if r.status_code == 404:
            raise LookupError(user)
        if r.status_code != 200:
            raise Unavailable(f"the hub answered {r.status_code} about user {user!r}")
        return (r.json().get("servers") or {}).get(server)

    async def start(self, user: str, server: str) -> None:
        path = f"/users/{quote(user, safe='')}/servers/{quote(server, safe='')}" if server else \
            f"/users/{quote(user, safe='')}/server"
        r = await self._request("POST", path, json={})
        if r.status_code not in (201, 202, 400):  # 400: already running or pending
            raise Unavailable(f"the hub could not start the server ({r.status_code}: {r.text[:200]})")

    async def activity(self, user: str, server: str) -> None:
        """Best effort: an SSH session counts as activity (for the idle culler)."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        try:
            r = await self.client.post(f"{self.api_url}/users/{quote(user, safe='')}/activity",
                                       json={"last_activity": now, "servers": {server: {"last_activity": now}}})
            if r.status_code >= 300:
                self.log.debug("activity of %s/%s: %s %s", user, server, r.status_code, r.text[:200])
        except httpx.HTTPError as e:
            self.log.debug("activity of %s/%s: %s", user, server, e)
