"""gemhub CLI: argument parsing, exit codes, formatting, and the client's HTTP handling.

The HTTP layer is faked with httpx.MockTransport here; tests/integration/test_cli.py runs
the same commands against a real hub and quota service.
"""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from gemhub.cli import main as cli
from gemhub.cli.client import ApiError, QuotaApi

WS = [{"id": 1, "name": "ada", "personal": True, "role": "owner", "created": "2026-01-01"},
      {"id": 7, "name": "lab", "personal": False, "role": "member", "created": "2026-01-02"}]


def test_format_table():
    out = cli.format_table(WS, cli.WORKSPACE_COLUMNS)
    assert out.splitlines() == [
        "ID  NAME  ROLE    PERSONAL  CREATED",
        "1   ada   owner   yes       2026-01-01",
        "7   lab   member  no        2026-01-02",
    ]


def test_format_table_empty_and_missing_values():
    assert cli.format_table([], cli.PROJECT_COLUMNS) == "(none)"
    assert cli.format_table([{"id": 3}], cli.PROJECT_COLUMNS).splitlines()[1] == "3   -     -"


def test_render_json_and_single_object():
    assert json.loads(cli.render(WS, cli.WORKSPACE_COLUMNS, True)) == WS
    assert "lab" in cli.render(WS[1], cli.WORKSPACE_COLUMNS, False).splitlines()[1]


class FakeService:
    """Records requests; answers like the quota service."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.projects: dict[int, list[dict]] = {1: [{"id": 1, "name": "default"}], 7: []}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/services/quota/api/v1/")
        if request.headers.get("Authorization") != "token T":
            return httpx.Response(403, json={"status": 403, "message": "bad token"})
        if path == "workspaces" and request.method == "GET":
            offset = int(request.url.params.get("offset", 0))
            page = WS[offset:offset + 1]  # one per page: exercises pagination
            nxt = {"offset": offset + 1, "limit": 1} if offset + 1 < len(WS) else None
            return httpx.Response(200, json={"items": page, "_pagination": {
                "offset": offset, "limit": 1, "total": len(WS), "next": nxt}})
        if path == "workspaces" and request.method == "POST":
            name = json.loads(request.content)["name"]
            if "/" in name:
                return httpx.Response(400, json={"status": 400, "message": "no / in names"})
            return httpx.Response(201, json={"id": 9, "name": name, "role": "owner",
                                             "personal": False, "created": "now"})
        for ws_id, projects in self.projects.items():
            if path == f"workspaces/{ws_id}/projects":
                if request.method == "GET":
                    return httpx.Response(200, json={"items": projects, "_pagination": {}})
                name = json.loads(request.content)["name"]
                return httpx.Response(201, json={"id": 5, "name": name, "created": "now"})
        return httpx.Response(404, json={"status": 404, "message": "not found"})


@pytest.fixture
def service(monkeypatch):
    fake = FakeService()
    transport = httpx.MockTransport(fake)

    monkeypatch.setattr(cli, "QuotaApi", lambda url, token: QuotaApi(url, token, transport=transport))
    return fake


def invoke(*args, token="T", url="http://hub.example"):
    env = {"GEMHUB_URL": url}
    if token is not None:
        env["GEMHUB_TOKEN"] = token
    return CliRunner().invoke(cli.main, list(args), env=env)


def test_help():
    r = invoke("--help")
    assert r.exit_code == 0
    assert "workspace" in r.output and "project" in r.output and "GEMHUB_TOKEN" in r.output


@pytest.mark.parametrize("args", [
    ("workspace", "create"),                       # NAME missing
    ("project", "list"),                           # --workspace missing
    ("project", "create", "p"),                    # --workspace missing
    ("workspace", "frobnicate"),
])
def test_usage_errors_exit_2(args, service):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert not service.requests


def test_no_token_is_a_usage_error(service):
    r = invoke("workspace", "list", token=None)
    assert r.exit_code == 2
    assert "GEMHUB_TOKEN" in r.output
    assert not service.requests


def test_workspace_list_table_follows_pages(service):
    r = invoke("workspace", "list")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].split() == ["ID", "NAME", "ROLE", "PERSONAL", "CREATED"]
    assert [line.split()[1] for line in r.output.splitlines()[1:]] == ["ada", "lab"]
    assert service.requests[0].url.host == "hub.example"
    assert service.requests[0].headers["Authorization"] == "token T"


def test_workspace_list_json(service):
    r = invoke("workspace", "list", "--json")
    assert r.exit_code == 0
    assert json.loads(r.output) == WS


def test_workspace_create(service):
    r = invoke("workspace", "create", "team", "--json")
    assert r.exit_code == 0
    assert json.loads(r.output)["name"] == "team"
    assert json.loads(service.requests[-1].content) == {"name": "team"}


def test_service_message_on_error_exit_1(service):
    r = CliRunner().invoke(cli.main, ["workspace", "create", "a/b"],
                           env={"GEMHUB_URL": "http://hub.example", "GEMHUB_TOKEN": "T"})
    assert r.exit_code == 1
    assert "no / in names" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("ref", ["lab", "7"])
def test_project_create_resolves_workspace_by_name_or_id(service, ref):
    r = invoke("project", "create", "exp1", "--workspace", ref)
    assert r.exit_code == 0, r.output
    assert service.requests[-1].url.path.endswith("/workspaces/7/projects")
    assert "exp1" in r.output


def test_project_list(service):
    r = invoke("project", "list", "-w", "ada")
    assert r.exit_code == 0
    assert r.output.splitlines()[1].split()[:2] == ["1", "default"]


def test_unknown_workspace_exit_1(service):
    r = invoke("project", "list", "-w", "nope")
    assert r.exit_code == 1
    assert "no workspace 'nope'" in r.stderr


def test_bad_token_exit_1(service):
    r = invoke("workspace", "list", token="wrong")
    assert r.exit_code == 1
    assert "bad token" in r.stderr


def test_client_redirect_and_plain_errors():
    def handler(request):
        if request.url.path.endswith("/workspaces"):
            return httpx.Response(302, headers={"Location": "/hub/login"})
        return httpx.Response(502, text="<html>bad gateway</html>")
    api = QuotaApi("http://h/", "T", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError, match="GEMHUB_TOKEN"):
        api.list_workspaces()
    with pytest.raises(ApiError) as e:
        api.list_projects(1)
    assert e.value.status == 502 and e.value.message == "502 Bad Gateway"


def test_client_unreachable():
    api = QuotaApi("http://127.0.0.1:1", "T", timeout=2)
    with pytest.raises(ApiError, match="cannot reach"):
        api.list_workspaces()
