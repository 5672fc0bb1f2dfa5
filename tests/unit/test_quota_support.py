"""Support for the quota unit tests (no tests here): the in-process service with its real app
and SQLite DB; only the hub is faked (who a token belongs to, which users exist, which servers run)."""

from __future__ import annotations

import asyncio
import contextlib
import copy

import httpx
from jupyterhub.services.auth import HubOAuth
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from gemhub.services.quota.app import QuotaService
from gemhub.services.quota.hubapi import wait_background

PREFIX = "/services/quota/"
ACCESS = "access:services!service=quota"


class FakeHubAuth(HubOAuth):
    """Maps ``Authorization: token T`` to a hub model; nothing else is faked."""

    def __init__(self, tokens: dict[str, dict]):
        super().__init__(api_token="fake", api_url="http://127.0.0.1:9/hub/api", base_url=PREFIX,
                         oauth_client_id="service-quota", access_scopes={ACCESS},
                         oauth_redirect_uri=f"http://127.0.0.1{PREFIX}oauth_callback",
                         oauth_authorization_url="/hub/api/oauth2/authorize")
        self.tokens = tokens

    async def get_user(self, handler, *, sync=True):
        header = handler.request.headers.get("Authorization", "")
        token = header[len("token "):].strip() if header.startswith("token ") else ""
        model = self.tokens.get(token)
        return copy.deepcopy(model) if model else None


class FakeHub:
    def __init__(self):
        self.users: set[str] = set()
        self.servers: list[dict] = []
        self.groups: dict[str, list[str] | None] = {}
        self.admins: set[str] = set()

    async def is_admin(self, name: str) -> bool:
        return name in self.admins

    async def user_exists(self, name: str) -> bool:
        return name in self.users

    async def running_servers(self) -> list[dict]:
        return list(self.servers)

    async def sync_group(self, ws_id, members) -> None:
        self.groups[f"ws-{ws_id}"] = await members()

    async def stop_servers(self, user: str, workspace_id: int) -> list[str]:
        mine = [s for s in self.servers if s["user"] == user
                and str(s["user_options"].get("workspace_id")) == str(workspace_id)]
        self.servers = [s for s in self.servers if s not in mine]
        return [s["server"] for s in mine]


class QuotaUnderTest:
    def __init__(self, tmp_path, **service_traits):
        self.state_dir = tmp_path / "state"
        self.hub = FakeHub()
        self.tokens: dict[str, dict] = {
            "service-token": {"kind": "service", "name": "quota", "scopes": []},
            "other-service": {"kind": "service", "name": "billing", "scopes": [ACCESS]},
            "no-scope": {"kind": "user", "name": "nobody", "scopes": [], "groups": []},
        }
        self.service = QuotaService(
            state_dir=str(self.state_dir), db_url=f"sqlite:///{tmp_path}/quota.sqlite",
            base_url=PREFIX, service_name="quota", hub_api=self.hub, **service_traits,
        )
        self.app = self.service.make_app(hub_auth=FakeHubAuth(self.tokens))

    def user(self, name: str) -> str:
        """Register a hub user; returns their token."""
        self.hub.users.add(name)
        self.tokens[f"tok-{name}"] = {"kind": "user", "name": name, "scopes": [ACCESS], "groups": []}
        return f"tok-{name}"

    async def __aenter__(self):
        sockets = bind_sockets(0, "127.0.0.1")
        self.server = HTTPServer(self.app)
        self.server.add_sockets(sockets)
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}{PREFIX}"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10)
        return self

    async def __aexit__(self, *exc):
        await self.http.aclose()
        self.server.stop()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.server.close_all_connections(), 2)
        self.service.engine.dispose()

    async def call(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        r = await self.http.request(method, path, headers=headers, **kw)
        await wait_background()  # let background group syncs run
        return r
