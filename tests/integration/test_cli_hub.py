"""The `gemhub` console script against a real hub and quota service, with a user's token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration

GEMHUB = Path(sys.executable).parent / "gemhub"


def gemhub(hub, token, *args):
    env = dict(os.environ, GEMHUB_URL=hub.url, GEMHUB_TOKEN=token)
    return subprocess.run([str(GEMHUB), *args], env=env, capture_output=True, text=True, timeout=60)


def ok(result) -> str:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_workspaces_and_projects(hub, user):
    name, token = user
    ws = unique_name("ws")

    created = json.loads(ok(gemhub(hub, token, "workspace", "create", ws, "--json")))
    assert created["name"] == ws
    assert created["role"] == "owner"

    table = ok(gemhub(hub, token, "workspace", "list")).splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "ROLE"]
    rows = {line.split()[1]: line.split() for line in table[1:]}
    assert ws in rows and rows[ws][2] == "owner"
    listed = json.loads(ok(gemhub(hub, token, "workspace", "list", "--json")))
    assert any(w["personal"] for w in listed)  # every user has a personal workspace

    out = ok(gemhub(hub, token, "project", "create", "exp-1", "--workspace", ws))
    assert "exp-1" in out
    by_name = json.loads(ok(gemhub(hub, token, "project", "list", "--workspace", ws, "--json")))
    assert "exp-1" in [p["name"] for p in by_name]
    by_id = json.loads(ok(gemhub(hub, token, "project", "list", "-w", str(created["id"]), "--json")))
    assert by_id == by_name

    personal = next(w for w in listed if w["personal"])
    out = ok(gemhub(hub, token, "project", "list", "--workspace", personal["name"]))
    assert "default" in out.split()


def test_bad_name_prints_the_service_message(hub, user):
    _, token = user
    bad = "a/b"
    direct = hub.request("POST", "/services/quota/api/v1/workspaces", token=token, json={"name": bad})
    assert direct.status_code == 400
    message = direct.json()["message"]

    r = gemhub(hub, token, "workspace", "create", bad)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() == f"gemhub: {message}"


def test_duplicate_workspace_and_unknown_workspace(hub, user):
    _, token = user
    ws = unique_name("dup")
    ok(gemhub(hub, token, "workspace", "create", ws))
    r = gemhub(hub, token, "workspace", "create", ws)
    assert r.returncode == 1 and r.stderr.startswith("gemhub: ")

    r = gemhub(hub, token, "project", "list", "--workspace", unique_name("nows"))
    assert r.returncode == 1
    assert "no workspace" in r.stderr


def test_bad_token_and_usage(hub):
    r = gemhub(hub, "not-a-token", "workspace", "list")
    assert r.returncode == 1 and r.stderr.startswith("gemhub: ")
    r = gemhub(hub, "", "workspace", "list")
    assert r.returncode == 2 and "GEMHUB_TOKEN" in r.stderr
