"""LocalGemSpawner's request handling without a hub: option validation, quota answers, form."""

from __future__ import annotations

import types

import pytest
from tornado import web

from gemhub.spawner.local.spawner import LocalGemSpawner
from gemhub.spawner.request import RequestError

PRESETS = [{"name": "B1", "display_name": "B1 · basic", "cpu": 1, "memory": "2G", "description": "dev"},
           {"name": "S1", "display_name": "S1", "cpu": 2, "memory": "4G", "description": ""}]


class FakeQuota:
    def __init__(self, calls):
        self.calls = calls

    async def resolve(self, user, workspace_id=None, project_id=None, workspace=None, project=None):
        self.calls.append((user, workspace_id, project_id, workspace, project))
        if workspace == "nope":
            raise RequestError("workspace 'nope' not found")
        return {"workspace": {"id": workspace_id or 3, "name": workspace or user},
                "project": {"id": project_id or 8, "name": project or "default"}}

    async def list_workspaces(self, user):
        return [{"id": 3, "name": user, "personal": True, "role": "owner",
                 "projects": [{"id": 8, "name": "default"}]}]


class BrokenQuota(FakeQuota):
    async def resolve(self, user, **refs):
        raise ConnectionError("connection refused")


def make_spawner(client=FakeQuota, calls=None):
    calls = [] if calls is None else calls
    orm = types.SimpleNamespace(user_options={}, name="", state=None, server=None)
    user = types.SimpleNamespace(name="alice", url="/user/alice/", escaped_name="alice",
                                 server=None, id=1)
    hub = types.SimpleNamespace(base_url="/hub/", api_url="http://127.0.0.1:8081/hub/api")
    sp = LocalGemSpawner(presets=PRESETS, default_preset="B1", quota_url="http://quota/",
                         quota_client_factory=lambda url, token: client(calls),
                         hub=hub, orm_spawner=orm, user=user)
    return sp, orm, calls


async def test_defaults_are_resolved_and_persisted():
    sp, orm, calls = make_spawner()
    await sp._run_apply_user_options({})
    assert calls == [("alice", None, None, None, None)]
    assert sp.user_options == orm.user_options == {"workspace_id": 3, "project_id": 8, "preset": "B1",
                                                   "profile": "B1",  # the admin panel's Profile column
                                                   "image": "host"}  # no image service: the host's OS
    assert sp.workload.env()["MEM_LIMIT"] == str(2 * 1024**3)


async def test_previous_options_resolve_by_id():
    sp, orm, calls = make_spawner()
    await sp._run_apply_user_options({"workspace": "old", "project": "p", "workspace_id": 3,
                                      "project_id": 8, "preset": "S1"})
    assert calls == [("alice", 3, 8, None, None)]
    assert sp.workload.preset.name == "S1"


@pytest.mark.parametrize("options,status,text", [
    ({"preset": "XL"}, 400, "unknown preset"),
    ({"gpu": 1}, 400, "unknown option"),
    ({"workspace": "nope"}, 400, "not found"),
])
async def test_refusals_are_http_errors_with_a_message(options, status, text):
    sp, _, _ = make_spawner()
    with pytest.raises(web.HTTPError) as e:
        await sp._run_apply_user_options(options)
    assert e.value.status_code == status
    assert text in e.value.jupyterhub_message


async def test_unreachable_quota_is_503():
    sp, _, _ = make_spawner(BrokenQuota)
    with pytest.raises(web.HTTPError) as e:
        await sp._run_apply_user_options({})
    assert e.value.status_code == 503 and "unavailable" in e.value.jupyterhub_message


async def test_options_form_and_parsing():
    sp, _, _ = make_spawner()
    html = await sp.get_options_form()
    assert 'name="workspace_id"' in html and 'value="3" data-name="alice" selected' in html
    assert 'name="preset"' in html and 'value="S1"' in html
    assert 'href="/services/quota/"' in html
    assert sp.run_options_from_form({"workspace_id": ["3"], "preset": ["S1"]}) == {
        "workspace_id": 3, "preset": "S1"}
    with pytest.raises(web.HTTPError):
        sp.run_options_from_form({"workspace_id": ["3", "4"]})


def test_traits_have_help():
    for name in ("state_dir", "presets", "default_preset", "quota_url", "quota_token", "cgroups",
                 "user_prefix"):
        trait = LocalGemSpawner.class_traits()[name]
        assert trait.metadata.get("config") and trait.help, name
    assert LocalGemSpawner().default_url == "/lab/tree/code"


def test_bad_preset_config_is_refused():
    with pytest.raises(Exception, match="memory"):
        LocalGemSpawner(presets=[{"name": "X", "cpu": 1, "memory": "lots"}])
