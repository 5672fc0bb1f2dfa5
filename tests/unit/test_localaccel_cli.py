"""`gemhub admin`: argument checks, requests sent, output (the hub faked with MockTransport;
tests/integration/test_localaccel_hub.py runs the console script against a real hub)."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from gemhub.cli import admin as admin_cli
from gemhub.cli.main import main

VIEW = {"source": "simulated", "policy": "binpack", "nodes": [{"name": "local", "maintenance": False, "devices": [
    {"id": "local/0", "model": "A100-80G", "memory_mib": 81920, "status": "online", "simulated": True,
     "holders": [{"holder": "server:ada/", "kind": "server", "user": "ada", "server": ""}]},
    {"id": "local/1", "model": "RTX4090", "memory_mib": 24576, "status": "maintenance", "simulated": True,
     "holders": []}]}]}


@pytest.fixture
def hub(monkeypatch):
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/hub/api/gemhub/devices":
            if request.method == "POST" and json.loads(request.content).get("device") == "local/9":
                return httpx.Response(404, json={"status": 404, "message": "there is no device 'local/9'"})
            return httpx.Response(200, json=VIEW)
        body = json.loads(request.content)
        return httpx.Response(200, json={"id": 12, "name": "team", "allowed_presets": body.get("allowed_presets"),
                                         "custom_spec": body.get("custom_spec", False)})

    real = admin_cli.AdminApi.__init__
    monkeypatch.setattr(admin_cli.AdminApi, "__init__",
                        lambda self, url, token: real(self, url, token, transport=httpx.MockTransport(answer)))
    return sent


def run(*args):
    return CliRunner().invoke(main, ["--token", "T", "admin", *args])


def test_devices_table(hub):
    r = run("devices")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:4] == ["DEVICE", "MODEL", "MEMORY", "STATUS"]
    assert "local/0  A100-80G  80 GiB" in lines[1] and lines[1].endswith("ada")
    assert "maintenance" in lines[2] and lines[2].endswith("-")


def test_maintenance_and_errors(hub):
    assert run("maintenance", "local/1", "--on").exit_code == 0
    assert json.loads(hub[-1].content) == {"maintenance": True, "device": "local/1"}
    assert run("maintenance", "--node", "local", "--off").exit_code == 0
    assert json.loads(hub[-1].content) == {"maintenance": False, "node": "local"}
    r = run("maintenance", "local/9", "--on")
    assert r.exit_code == 1 and "no device 'local/9'" in r.output
    assert run("maintenance", "--on").exit_code == 2
    assert run("maintenance", "local/1").exit_code == 2


def test_limits(hub):
    r = run("limits", "12", "--presets", "B1, S1", "--no-custom-spec")
    assert r.exit_code == 0, r.output
    assert json.loads(hub[-1].content) == {"allowed_presets": ["B1", "S1"], "custom_spec": False}
    assert hub[-1].method == "PATCH" and hub[-1].url.path == "/services/quota/api/v1/workspaces/12"
    assert "presets B1, S1; custom spec not allowed" in r.output
    r = run("limits", "12", "--all-presets")
    assert json.loads(hub[-1].content) == {"allowed_presets": None} and "presets all" in r.output
    assert run("limits", "12").exit_code == 2
    assert run("limits", "12", "--presets", "B1", "--all-presets").exit_code == 2
