import pytest

from gemhub.spawner.presets import Catalog
from gemhub.spawner.request import Ref, RequestError, RequestedOptions, build_request, parse_options

CAT = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "2G"},
                           {"name": "S1", "cpu": 0.5, "memory": "512M"}], "B1")
RESOLVED = {"workspace": {"id": 4, "name": "team"}, "project": {"id": 9, "name": "default"}}


def test_empty_means_defaults():
    assert parse_options({}, CAT) == RequestedOptions()
    assert parse_options(None, CAT) == RequestedOptions()


def test_names_and_ids():
    assert parse_options({"workspace": "team", "project": "p", "preset": "S1"}, CAT) == \
        RequestedOptions("team", "p", "S1")
    assert parse_options({"workspace": 4, "project": 9}, CAT) == RequestedOptions("4", "9", None)


def test_reused_options_fall_back_to_ids():
    # what JupyterHub hands back on a REST spawn with no body after an earlier spawn
    assert parse_options({"workspace_id": 4, "project_id": 9, "preset": "B1"}, CAT) == \
        RequestedOptions("4", "9", "B1")
    # persisted options carry names and ids: the ids win (a renamed workspace still resolves)
    assert parse_options({"workspace": "old", "project": "p", "workspace_id": 4, "project_id": 9,
                          "preset": "S1"}, CAT) == RequestedOptions("4", "9", "S1")
    assert parse_options({"workspace_id": 4, "project": "p"}, CAT) == RequestedOptions("4", "p", None)


@pytest.mark.parametrize("opts,match", [
    ({"gpu": "x"}, "unknown option"),
    ({"image": "a/b"}, "image name"),
    ({"preset": "XL"}, "unknown preset"),
    ({"preset": 3}, "preset"),
    ({"workspace": ["a"]}, "workspace"),
    ({"workspace": True}, "workspace"),
    ({"workspace": "a/b"}, "not a valid name"),
    ({"project": "x" * 64}, "not a valid name"),
    ({"workspace_id": "4"}, "whole number"),
    ("workspace", "JSON object"),
])
def test_rejects(opts, match):
    with pytest.raises(RequestError, match=match):
        parse_options(opts, CAT)


def test_build_request_and_env():
    req = build_request("alice", RequestedOptions(preset="S1"), RESOLVED, CAT)
    assert req.workspace == Ref(4, "team") and req.project == Ref(9, "default")
    assert req.env() == {"GEMHUB_WORKSPACE": "team", "GEMHUB_PROJECT": "default",
                         "GEMHUB_PRESET": "S1", "MEM_LIMIT": str(512 * 1024**2), "CPU_LIMIT": "0.5",
                         "GEMHUB_IMAGE": "host"}
    assert build_request("a", RequestedOptions(), RESOLVED, CAT).env()["CPU_LIMIT"] == "1"
    assert req.persisted_options({"workspace": "4"}) == {
        "workspace": "team", "project": "default", "workspace_id": 4, "project_id": 9, "preset": "S1",
        "image": "host"}


def test_build_request_rejects_bad_answers():
    with pytest.raises(RequestError):
        build_request("a", RequestedOptions(), {"workspace": {"id": "x", "name": "w"},
                                                "project": {"id": 1, "name": "p"}}, CAT)
    with pytest.raises(RequestError):
        build_request("a", RequestedOptions(), {"workspace": {"id": 1}}, CAT)
