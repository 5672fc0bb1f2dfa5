"""A small typed client of the quota service's REST API (workspaces and projects), over httpx.

Used by the ``gemhub`` command line; any script can use it too::

    client = QuotaApi("https://gemhub.example.com", token)
    for ws in client.list_workspaces(): ...
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Self, TypeVar

import click
import httpx

API_PREFIX = "/services/quota/api/v1/"


class ApiError(Exception):
    """The service (or the way to it) refused a request; ``message`` is for people."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.status = status
        self.message = message


class HubApi:
    """Synchronous JSON client of the part of a hub under ``prefix``, with a hub API token.

    What the CLI's clients share: the token header, error mapping and pagination.
    """

    prefix = "/"

    def __init__(self, hub_url: str, token: str, *, timeout: float = 30,
                 transport: httpx.BaseTransport | None = None):
        self.base_url = hub_url.rstrip("/") + self.prefix
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------
    def _paginate(self, path: str, params: dict | None = None, limit: int = 200) -> Iterator[dict[str, Any]]:
        """Items of a JupyterHub-style paginated list (a plain JSON list works too)."""
        offset = 0
        params = {k: v for k, v in (params or {}).items() if v is not None}
        while True:
            body = self._request("GET", path, params={**params, "offset": offset, "limit": limit})
            if isinstance(body, list):
                yield from body
                return
            items = body.get("items", [])
            yield from items
            nxt = (body.get("_pagination") or {}).get("next")
            if not nxt or not items:
                return
            offset = int(nxt.get("offset", offset + len(items)))

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ApiError(0, f"cannot reach {self.base_url}: {e}") from None
        if r.is_redirect:
            raise ApiError(r.status_code, "not authenticated (the hub redirected to its login"
                                          " page): check GEMHUB_TOKEN")
        if r.is_error:
            raise ApiError(r.status_code, error_message(r))
        if not r.content:
            return {}
        try:
            return r.json()
        except ValueError:
            raise ApiError(r.status_code, f"{method} {r.url} answered non-JSON") from None


class QuotaApi(HubApi):
    """Synchronous client of ``<hub url>/services/quota/api/v1/`` with a hub API token."""

    prefix = API_PREFIX

    # -- workspaces --------------------------------------------------------------------
    def list_workspaces(self) -> list[dict[str, Any]]:
        return list(self._paginate("workspaces"))

    def create_workspace(self, name: str) -> dict[str, Any]:
        return self._request("POST", "workspaces", json={"name": name})

    def find_workspace(self, name_or_id: str) -> dict[str, Any]:
        """The caller's workspace with this name (or, failing that, this id)."""
        workspaces = self.list_workspaces()
        for ws in workspaces:
            if ws.get("name") == name_or_id:
                return ws
        for ws in workspaces:
            if str(ws.get("id")) == name_or_id:
                return ws
        raise ApiError(404, f"no workspace {name_or_id!r} among yours")

    # -- projects ----------------------------------------------------------------------
    def list_projects(self, workspace_id: int | str) -> list[dict[str, Any]]:
        return list(self._paginate(f"workspaces/{workspace_id}/projects"))

    def create_project(self, workspace_id: int | str, name: str) -> dict[str, Any]:
        return self._request("POST", f"workspaces/{workspace_id}/projects", json={"name": name})


def error_message(r: httpx.Response) -> str:
    """The service's own message ({"status": N, "message": "..."}), else the status line."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{r.status_code} {r.reason_phrase}".strip()


A = TypeVar("A", bound=HubApi)


def run_or_exit(api: A, call: Callable[[A], Any]) -> Any:
    """``call(api)`` for a command, closing the client; a refusal ends the command with the
    message on stderr and exit status 1."""
    with api:
        try:
            return call(api)
        except ApiError as e:
            click.echo(f"gemhub: {e.message}", err=True)
            raise SystemExit(1)
