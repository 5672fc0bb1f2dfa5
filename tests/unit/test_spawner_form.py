import re

import pytest

from gemhub.spawner.form import options_from_form, render_form
from gemhub.spawner.presets import Catalog
from gemhub.spawner.request import RequestError

CAT = Catalog.from_config([{"name": "B1", "display_name": "B1 · basic", "cpu": 1, "memory": "2G",
                            "description": "development"},
                           {"name": "S1", "cpu": 2, "memory": "4G"}], "B1")
WS = [
    {"id": 1, "name": "alice", "personal": True, "projects": [{"id": 1, "name": "default"},
                                                              {"id": 2, "name": "exp"}]},
    {"id": 5, "name": "team <b>", "personal": False, "projects": [{"id": 7, "name": "default"}]},
]


def test_render_defaults():
    html = render_form(WS, CAT)
    assert '<select class="form-select form-control" id="gemhub-workspace" name="workspace_id">' in html
    assert 'name="project_id"' in html
    assert '<option value="1" data-name="alice" selected>alice (personal)</option>' in html
    assert '<option value="1" data-workspace="1" selected>default</option>' in html
    assert '<option value="2" data-workspace="1">exp</option>' in html
    assert '<option value="7" data-workspace="5">default</option>' in html
    assert 'type="radio" name="preset" id="gemhub-preset-B1" value="B1" checked' in html
    assert "2G memory" in html and "development" in html and "1 CPU" in html
    assert 'href="/services/quota/"' in html and "Manage workspaces" in html
    assert "team &lt;b&gt;" in html  # escaped


def test_render_previous_selection():
    html = render_form(WS, CAT, {"workspace_id": 1, "project_id": 2, "preset": "S1"}, "/base/")
    assert '<option value="2" data-workspace="1" selected>exp</option>' in html
    assert 'value="S1" checked' in html
    assert 'href="/base/services/quota/"' in html


def test_options_from_form_sends_ids():
    assert options_from_form({"workspace_id": ["5"], "project_id": ["7"], "preset": ["S1"],
                              "_xsrf": ["t"]}) == {"workspace_id": 5, "project_id": 7, "preset": "S1"}
    assert options_from_form({}) == {}
    assert options_from_form({"workspace_id": ["5"], "project_id": [""]}) == {"workspace_id": 5}


@pytest.mark.parametrize("data", [{"workspace_id": ["1", "2"]}, {"image": ["x"]}, {"preset": []},
                                  {"workspace": ["team"]}, {"workspace_id": ["²"]}, {"project_id": ["-1"]},
                                  {"workspace_id": ["9" * 40]}])
def test_options_from_form_rejects(data):
    with pytest.raises(RequestError):
        options_from_form(data)


def test_render_previous_team_by_id():
    html = render_form(WS, CAT, {"workspace_id": 5, "project_id": 7})
    assert '<option value="5" data-name="team &lt;b&gt;" selected>team &lt;b&gt;</option>' in html
    assert '<option value="7" data-workspace="5" selected>default</option>' in html
    assert '<option value="1" data-workspace="1">default</option>' in html


def test_render_no_workspaces():
    html = render_form([], CAT)
    assert 'name="workspace_id"' in html and 'name="preset"' in html
