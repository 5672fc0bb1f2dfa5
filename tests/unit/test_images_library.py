"""The image service's rules without a hub: sharing (public / workspace / private, as for
datasets), choosing a version or tag, official images, deletion guards, choice parsing,
the spawn form's image select and the pod's image reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemhub.services.common.db import make_engine, make_sessionmaker, run_migrations
from gemhub.services.common.errors import BadRequest, Conflict, Forbidden, NotFound
from gemhub.services.images import catalog, names
from gemhub.services.images.app import ImagesService
from gemhub.services.images.library import Library, sync_official
from gemhub.services.images.models import AuditEvent, ImageVersion
from gemhub.spawner.form import image_choice_from_form, render_image_choice
from gemhub.spawner.request import HOST_IMAGE, ImageChoice, RequestError, parse_options

IMAGES = Path(__file__).resolve().parents[2] / "images"
A = [{"id": 1, "name": "team-a", "role": "member", "personal": False}]
A_OWNER = [{"id": 1, "name": "team-a", "role": "owner", "personal": False}]
B = [{"id": 2, "name": "team-b", "role": "owner", "personal": True}]


@pytest.fixture
def maker(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/images.sqlite")
    run_migrations(engine, ImagesService.migrations_dir)
    yield make_sessionmaker(engine, AuditEvent)
    engine.dispose()


def lib(maker, actor, workspaces, admin=False) -> Library:
    return Library(maker(), actor, workspaces, admin)


def built(library: Library, image, number_of_versions=1):
    for _ in range(number_of_versions):
        v = library.add_version(image)
        v.state = "succeeded"
    library.db.commit()
    return image


def test_private_image_of_a_is_invisible_to_b_and_its_other_members(maker):
    alice = lib(maker, "alice", A)
    img = built(alice, alice.create({"name": "tools", "workspace": "team-a", "visibility": "private"}))
    assert [i.name for i in lib(maker, "alice", A).visible()] == ["tools"]
    for other in (lib(maker, "bob", B), lib(maker, "carol", A)):
        assert other.visible() == []
        with pytest.raises(NotFound):
            other.get(img.id)
        with pytest.raises(NotFound):  # as a base, or to start: the same answer as "missing"
            other.pick({"id": img.id})
        with pytest.raises(NotFound):
            other.pick({"name": "tools"})
    # an owner of the workspace sees it (as with datasets)
    assert lib(maker, "olga", A_OWNER).get(img.id).name == "tools"


def test_workspace_and_public_visibility(maker):
    alice = lib(maker, "alice", A)
    ws = built(alice, alice.create({"name": "ws", "workspace": "1"}))
    pub = built(alice, alice.create({"name": "pub", "workspace": "1", "visibility": "public"}))
    bob = lib(maker, "bob", B)
    assert [i.name for i in bob.visible()] == ["pub"]
    assert bob.pick({"name": "pub"})[0].id == pub.id
    with pytest.raises(Forbidden):
        bob.get(pub.id, "edit")  # public: everyone uses it, only its workspace builds it
    assert lib(maker, "carol", A).get(ws.id, "edit").id == ws.id
    with pytest.raises(Forbidden):
        lib(maker, "carol", A).get(ws.id, "manage")  # not the creator, not an owner


def test_versions_tags_and_latest(maker):
    alice = lib(maker, "alice", A)
    img = built(alice, alice.create({"name": "tools", "workspace": "team-a"}), 2)
    building = alice.add_version(img)
    assert alice.pick({"id": img.id})[1].number == 2  # newest *built* version
    alice.set_tag(img.id, "stable", 1)
    assert alice.pick({"id": img.id, "tag": "stable"})[1].number == 1
    with pytest.raises(Conflict, match="queued"):
        alice.pick({"id": img.id, "version": building.number})
    with pytest.raises(Conflict, match="only built versions can be tagged"):
        alice.set_tag(img.id, "next", building.number)
    with pytest.raises(NotFound):
        alice.pick({"id": img.id, "tag": "nope"})
    as_json = alice.image_json(alice.get(img.id), True)
    assert as_json["tags"] == {"stable": 1} and as_json["latest_version"] == 2 and as_json["building"] == [3]
    assert [v["tags"] for v in as_json["versions"]] == [["stable"], ["latest"], []]
    alice.remove_tag(img.id, "stable")
    assert alice.image_json(alice.get(img.id))["tags"] == {}


def test_an_image_with_no_built_version_says_so(maker):
    alice = lib(maker, "alice", A)
    img = alice.create({"name": "tools", "workspace": "team-a"})
    alice.add_version(img)
    with pytest.raises(Conflict, match="no built version yet .version 1 is being built"):
        alice.pick({"id": img.id})


def test_names_are_unique_per_workspace_and_checked(maker):
    alice = lib(maker, "alice", A)
    alice.create({"name": "tools", "workspace": "team-a"})
    with pytest.raises(Conflict):
        lib(maker, "alice", A).create({"name": "tools", "workspace": "team-a"})
    for bad in ("a/b", "x" * 300, "", "a:b", 5):
        with pytest.raises(BadRequest):
            lib(maker, "alice", A).create({"name": bad, "workspace": "team-a"})
    with pytest.raises(BadRequest, match="not a member"):
        lib(maker, "alice", A).create({"name": "t2", "workspace": "team-b"})
    with pytest.raises(BadRequest, match="unknown key"):
        lib(maker, "alice", A).create({"name": "t3", "workspace": "team-a", "owner": "eve"})


def test_delete_guards(maker):
    alice = lib(maker, "alice", A)
    img = built(alice, alice.create({"name": "tools", "workspace": "team-a", "visibility": "public"}))
    v1 = img.versions[0]
    with pytest.raises(Conflict, match="running environment"):
        alice.check_unused(img, [v1], {v1.id})
    bob = lib(maker, "bob", B)
    child = bob.create({"name": "mine", "workspace": "team-b"})
    bob.add_version(child, base_version_id=v1.id)
    with pytest.raises(Conflict, match="base of another image"):
        alice.check_unused(img, [v1], set())
    queued = alice.add_version(alice.get(img.id))
    with pytest.raises(Conflict, match="cancel it first"):
        alice.check_unused(img, [queued], set())


def test_official_images_are_synced_and_managed_by_hub_admins(maker):
    entries = catalog.load(IMAGES)
    with maker() as session:
        queued = sync_official(session, entries)
    with maker() as session:
        assert sync_official(session, entries) == []  # the recipe has a version already
    assert len(queued) == 1  # base is the only autobuild image
    user = lib(maker, "bob", B)
    names_seen = {i.name: i for i in user.visible(kind="official")}
    assert set(names_seen) >= {"base", "pytorch", "pytorch-cuda", "tensorflow", "ascend-cann"}
    assert "hub" not in names_seen
    assert names_seen["pytorch-cuda"].cluster_only
    with pytest.raises(Forbidden, match="hub admins"):
        user.get(names_seen["base"].id, "edit")
    assert lib(maker, "root", [], admin=True).get(names_seen["base"].id, "manage")
    v = user.db.get(ImageVersion, queued[0])
    assert v.recipe == entries["base"].recipe and v.created_by == "platform"
    with maker() as session:
        assert sync_official(session, entries, autobuild=False) == []


@pytest.mark.parametrize("raw, parsed", [
    ("base", {"name": "base"}), (" base:v3 ", {"name": "base", "version": 3}),
    ("tools:stable", {"name": "tools", "tag": "stable"}), ("tools:latest", {"name": "tools"}), (7, {"id": 7}),
    ({"id": 7, "version": 2}, {"id": 7, "version": 2}), ({"name": "x", "tag": "t"}, {"name": "x", "tag": "t"}),
    ({"id": "7"}, {"id": 7}),
])
def test_choices(raw, parsed):
    assert names.parse_choice(raw) == parsed


@pytest.mark.parametrize("raw", [True, None, 0, -1, 2**40, "a/b", "x" * 300, [1], {"id": 1, "x": 2},
                                 {"version": 1}, {"id": 1, "version": 1, "tag": "t"}, {"id": 1, "version": "v"},
                                 "base:.bad", "base:" + "t" * 200])
def test_bad_choices_are_400(raw):
    with pytest.raises(BadRequest):
        names.parse_choice(raw)


def test_spawn_options_take_an_image():
    from gemhub.spawner.presets import Catalog

    presets = Catalog.from_config([{"name": "B1", "display_name": "B1", "cpu": 1, "memory": "1G"}], "B1")
    assert parse_options({"image": "tools:v2"}, presets).image == {"name": "tools", "version": 2}
    assert parse_options({"image": "host"}, presets).image == HOST_IMAGE
    assert parse_options({}, presets).image is None
    for bad in ({"image": "a/b"}, {"image": True}, {"image": {"id": 1, "tag": "x y"}}):
        with pytest.raises(RequestError):
            parse_options(bad, presets)
    with pytest.raises(RequestError):
        ImageChoice(id=0, version=1, version_id=1)


def test_the_spawn_forms_image_select():
    offered = [{"id": 1, "name": "base", "kind": "official", "versions": [
                   {"number": 1, "state": "succeeded", "tags": []}, {"number": 2, "state": "succeeded",
                                                                     "tags": ["latest"]}]},
               {"id": 5, "name": "tools", "kind": "custom", "workspace": "team-a", "visibility": "private",
                "versions": [{"number": 1, "state": "failed"}, {"number": 2, "state": "succeeded", "tags": []}]}]
    html = render_image_choice(offered, {}, "/", "base", True)
    assert 'value="1:2" selected' in html and 'value="5:2"' in html and 'value="5:1"' not in html
    assert "Host OS (fallback" in html
    assert 'value="5:2" selected' in render_image_choice(offered, {"image": {"id": 5, "version": 2}})
    assert "Host OS" not in render_image_choice(offered, {}, "/", "base", False)
    assert image_choice_from_form("5:2") == {"id": 5, "version": 2}
    assert image_choice_from_form("host") == "host"
    with pytest.raises(RequestError):
        image_choice_from_form("5")
