import pytest

from gemhub.spawner.presets import Catalog
from gemhub.spawner.request import (
    Ref, RequestError, RequestedOptions, build_request, check_server_name, parse_options)

CAT = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "2G"},
                           {"name": "S1", "cpu": 0.5, "memory": "512M"}], "B1")
RESOLVED = {"workspace": {"id": 4, "name": "team"}, "project": {"id": 9, "name": "default"}}


def test_empty_means_defaults():
    assert parse_options({}, CAT) == RequestedOptions()
    assert parse_options(None, CAT) == RequestedOptions()


def test_names_and_ids_have_their_own_keys():
    assert parse_options({"workspace": "team", "project": "p", "preset": "S1"}, CAT) == \
        RequestedOptions(workspace="team", project="p", preset="S1")
    assert parse_options({"workspace_id": 4, "project_id": 9}, CAT) == RequestedOptions(4, 9)
    # a name that looks like an id stays a name
    assert parse_options({"workspace": "1", "project": "2"}, CAT) == RequestedOptions(workspace="1", project="2")


def test_reused_options_use_ids():
    # what JupyterHub hands back on a REST spawn with no body after an earlier spawn
    assert parse_options({"workspace_id": 4, "project_id": 9, "preset": "B1"}, CAT) == \
        RequestedOptions(4, 9, preset="B1")
    # options stored by earlier releases carry names and ids: the ids win
    assert parse_options({"workspace": "old", "project": "p", "workspace_id": 4, "project_id": 9,
                          "preset": "S1"}, CAT) == RequestedOptions(4, 9, preset="S1")
    assert parse_options({"workspace_id": 4, "project": "p"}, CAT) == RequestedOptions(4, None, project="p")


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
    ({"workspace_id": 2**63}, "whole number"),
    ({"workspace_id": -1}, "whole number"),
    ({"workspace": 4}, "give an id as workspace_id"),
    ({"project_id": 4}, "needs the workspace"),
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
    # only ids are stored: a later start cannot be redirected by a workspace named like an id
    assert req.persisted_options({"workspace": "1", "project": "2"}) == {
        "workspace_id": 4, "project_id": 9, "preset": "S1", "profile": "S1", "image": "host"}


def test_profile_is_the_preset_under_the_admin_panels_name():
    assert parse_options({"profile": "S1"}, CAT).preset == "S1"
    assert parse_options({"profile": "S1", "preset": "S1"}, CAT).preset == "S1"
    with pytest.raises(RequestError, match="disagree"):
        parse_options({"profile": "B1", "preset": "S1"}, CAT)
    with pytest.raises(RequestError, match="profile must be a preset name"):
        parse_options({"profile": 3}, CAT)


@pytest.mark.parametrize("name", ["dataset-3-1", "model-12-7"])
def test_reserved_server_names_are_refused(name):
    with pytest.raises(RequestError, match="reserved"):
        check_server_name(name)


@pytest.mark.parametrize("name", ["", "gpu", "default", "dataset-3", "my-model-1-2"])
def test_other_server_names_are_fine(name):
    check_server_name(name)


def test_build_request_rejects_bad_answers():
    with pytest.raises(RequestError):
        build_request("a", RequestedOptions(), {"workspace": {"id": "x", "name": "w"},
                                                "project": {"id": 1, "name": "p"}}, CAT)
    with pytest.raises(RequestError):
        build_request("a", RequestedOptions(), {"workspace": {"id": 1}}, CAT)


def test_long_values_are_not_echoed_whole():
    with pytest.raises(RequestError) as e:
        parse_options({"workspace": "x" * 5_000_000}, CAT)
    assert len(str(e.value)) < 300
