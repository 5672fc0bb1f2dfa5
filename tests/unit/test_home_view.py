"""The home page's view (gemhub.hub_config.home.HomeView) over hub-shaped objects."""

from __future__ import annotations

import datetime as dt
import types

from gemhub.hub_config.home import HomeView
from gemhub.spawner.common import user_error
from gemhub.spawner.presets import Catalog
from gemhub.spawner.summary import AcceleratorLabels

CATALOG = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "2G"},
                               {"name": "S1", "cpu": 2, "memory": "4G", "accelerator": "1(RTX4090)"}], "B1")


def fake_user(list_workspaces):
    spawner = types.SimpleNamespace(accelerator_labels=lambda: AcceleratorLabels(CATALOG),
                                    list_workspaces=list_workspaces)
    orm = {
        "gpu": types.SimpleNamespace(name="gpu", server=object(), state={"preset": "S1"},
                                     user_options={"workspace_id": 7, "project_id": 9},
                                     started=dt.datetime(2026, 11, 25, 9, 0)),
        "": types.SimpleNamespace(name="", server=None, state={}, user_options={}, started=None),
        "old": types.SimpleNamespace(name="old", server=None, state={}, user_options={"preset": "B1"}, started=None),
    }
    starting = types.SimpleNamespace(active=True, ready=False, pending="spawn")
    return types.SimpleNamespace(name="alice", escaped_name="alice", spawner=spawner,
                                 orm_user=types.SimpleNamespace(orm_spawners=orm), spawners={"old": starting},
                                 server_url=lambda name: f"/user/alice/{name}/" if name else "/user/alice/")


def test_servers_default_first_then_named_with_their_state():
    async def nothing():
        return []

    home = HomeView(fake_user(nothing))
    servers = home.servers([{"id": 7, "name": "team", "projects": [{"id": 9, "name": "p"}]}])
    assert [(s.label, s.status) for s in servers] == [("default", "stopped"), ("gpu", "running"),
                                                     ("old", "starting")]
    gpu = servers[1]
    assert (gpu.preset, gpu.accelerator, gpu.workspace, gpu.project, gpu.ssh_login) == (
        "S1", "1(RTX4090)", "team", "p", "alice+gpu")
    assert home.spawn_url("/hub/", servers[0]) == "/hub/spawn/alice"
    assert home.spawn_url("/hub/", gpu) == "/hub/spawn/alice/gpu" and home.server_url(gpu) == "/user/alice/gpu/"
    assert HomeView(None).servers() == []


async def test_workspaces_or_the_reason_they_are_missing():
    async def listed():
        return [{"name": "alice", "role": "owner"}]

    async def down():
        raise user_error(503, "the workspace service is unavailable right now (connection refused)")

    assert await HomeView(fake_user(listed)).workspaces() == {"items": [{"name": "alice", "role": "owner"}],
                                                              "error": None}
    assert await HomeView(fake_user(down)).workspaces() == {
        "items": [], "error": "the workspace service is unavailable right now (connection refused)"}


def test_pages_name_the_services_for_people():
    services = [types.SimpleNamespace(name="quota", href="/services/quota/"),
                types.SimpleNamespace(name="billing", href="/services/billing/")]
    home = HomeView(None)
    assert [(p.title, p.url) for p in home.pages(services)] == [
        ("Workspaces and projects", "/services/quota/"), ("billing", "/services/billing/")]
    assert home.service_page(services, "quota", "workspaces/3") == "/services/quota/workspaces/3"
    assert home.service_page(services, "data") is None
