"""Pure rules of the data service: names, visibility, storage levels, incremental scans,
hourly samples, and the spawner's mount choices, slots and form."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from gemhub.services.common.errors import BadRequest, Forbidden, NotFound
from gemhub.services.data import access, accounting, files, names
from gemhub.services.data.models import Asset, Base, StorageSample, Version
from gemhub.spawner import form, layout
from gemhub.spawner.presets import Catalog
from gemhub.spawner.request import RequestError, assign_slots, parse_options


@dataclass
class A:
    id: int = 1
    kind: str = "dataset"
    name: str = "d"
    workspace_id: int = 10
    visibility: str = "workspace"
    created_by: str = "alice"


@pytest.mark.parametrize("visibility, actor, roles, see, edit, manage", [
    ("public", "bob", {}, True, False, False),
    ("public", "bob", {10: "member"}, True, True, False),
    ("workspace", "bob", {}, False, False, False),
    ("workspace", "bob", {10: "member"}, True, True, False),
    ("private", "bob", {10: "member"}, False, False, False),
    ("private", "bob", {10: "admin"}, True, True, True),
    ("private", "alice", {10: "member"}, True, True, True),
    ("private", "bob", {11: "owner"}, False, False, False),
])
def test_visibility(visibility, actor, roles, see, edit, manage):
    a = A(visibility=visibility)
    assert access.can_see(a, actor, roles) is see
    assert access.can_edit(a, actor, roles) is edit
    assert access.can_manage(a, actor, roles) is manage


def test_require_hides_existence():
    with pytest.raises(NotFound):
        access.require(A(visibility="private"), "bob", {}, "see", 1)
    with pytest.raises(NotFound):
        access.require(None, "bob", {}, "see", 1)
    with pytest.raises(Forbidden, match="read it but not change it"):
        access.require(A(visibility="public"), "bob", {}, "edit", 1)


@pytest.mark.parametrize("bad", ["", "a/b", ".", "..", "x" * 65, "a\0b", 3])
def test_file_names(bad):
    with pytest.raises(BadRequest):
        names.check_file_name(bad)


def test_names_ok():
    assert names.check_file_name("x" * 64) == "x" * 64
    assert names.split_path("/a/b/") == ["a", "b"]
    assert names.check_tags("a, b,a") == ["a", "b"]
    with pytest.raises(BadRequest):
        names.check_visibility("secret")


def test_storage_levels():
    gb = accounting.GB
    assert accounting.level(10 * gb, 50 * gb)["level"] == "ok"
    warn = accounting.level(40 * gb, 50 * gb)
    assert warn["level"] == "warning" and "80%" in warn["message"]
    full = accounting.level(51 * gb, 50 * gb)
    assert full["level"] == "full" and "charged daily" in full["message"]


def test_scanner_reuses_unchanged_folders(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x" * 5000)
    (tmp_path / "g").write_bytes(b"y" * 100)
    scanner = accounting.DirectoryScanner()
    assert scanner.size(tmp_path) == 5100
    listed: list[str] = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: listed.append(p) or real(p))
    (tmp_path / "a" / "b" / "f").write_bytes(b"x" * 7000)  # grows in place: folder mtime unchanged
    assert scanner.size(tmp_path) == 7100
    assert listed == []  # no folder was listed again
    (tmp_path / "a" / "new").write_bytes(b"z" * 10)
    assert scanner.size(tmp_path) == 7110
    assert listed == [str(tmp_path / "a")]


def test_usage_and_hourly_samples_are_idempotent(tmp_path):
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        a = Asset(kind="model", name="m", workspace_id=7, workspace_name="w", description="", tags=[],
                  visibility="private", created_by="x")
        a.versions.append(Version(number=1, state="published", size_bytes=1234, file_count=1, note="",
                                  created_by="x"))
        s.add(a)
        s.commit()
        code = tmp_path / "workspaces" / "7" / "projects" / "1" / "code"
        code.mkdir(parents=True)
        (code / "x.py").write_bytes(b"p" * 300)
        accounting.scan(s, tmp_path, accounting.DirectoryScanner(), accounting.known_workspaces(s, tmp_path))
        assert accounting.usage(s, 7) == {"code": 300, "output": 0, "datasets": 0, "models": 1234, "images": 0}
        t = datetime.datetime(2026, 11, 25, 8, 30, tzinfo=datetime.timezone.utc)
        assert accounting.take_samples(s, [7], t) == 1
        assert accounting.take_samples(s, [7], t + datetime.timedelta(minutes=20)) == 0
        assert accounting.take_samples(s, [7], t + datetime.timedelta(hours=1)) == 1
        sample = s.query(StorageSample).order_by(StorageSample.id).first()
        assert sample.total == 1534 and sample.hour.hour == 8 and sample.hour.minute == 0


def test_drafts_written_behind_the_service_are_measured(tmp_path):
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        a = Asset(kind="dataset", name="d", workspace_id=3, workspace_name="w", description="", tags=[],
                  visibility="private", created_by="x")
        a.versions.append(Version(number=1, state="draft", size_bytes=0, file_count=0, note="", created_by="x"))
        s.add(a)
        s.commit()
        draft = layout.asset_draft_dir(tmp_path, "dataset", a.id, 1)
        (draft / "sftp").mkdir(parents=True)
        (draft / "sftp" / "big.bin").write_bytes(b"b" * 4096)  # as an SFTP client would
        accounting.refresh_drafts(s, tmp_path)
        assert accounting.usage(s, 3)["datasets"] == 4096
        os.mkfifo(draft / "pipe")
        with pytest.raises(BadRequest, match="not a regular file"):
            files.publish(draft, layout.asset_version_dir(tmp_path, "dataset", a.id, 1))


def test_publish_makes_read_only(tmp_path):
    draft = tmp_path / "drafts" / "1"
    (draft / "sub").mkdir(parents=True)
    (draft / "sub" / "f").write_text("x")
    (draft / "sub" / ".gemhub-extract-0123").mkdir()  # left by a crash mid-extraction
    (draft / "sub" / ".gemhub-extract-0123" / "half").write_text("x")
    final = tmp_path / "1"
    files.publish(draft, final)
    assert not draft.exists()
    assert sorted(p.name for p in (final / "sub").iterdir()) == ["f"]
    assert oct(final.stat().st_mode & 0o777) == "0o555"
    assert oct((final / "sub" / "f").stat().st_mode & 0o777) == "0o444"


def test_draft_paths_never_follow_links(tmp_path):
    (tmp_path / "d").mkdir()
    os.symlink("/etc", tmp_path / "d" / "etc")
    with pytest.raises(BadRequest, match="link"):
        files.locate(tmp_path, "d/etc/passwd")
    with pytest.raises(BadRequest, match="'..'"):
        files.locate(tmp_path, "../x")


CATALOG = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "1G"}], "B1")


def test_mount_choices_and_slots():
    req = parse_options({"datasets": [{"name": "mnist", "version": 2}, {"id": 5}], "models": [{"id": 9}]}, CATALOG)
    assert req.datasets == ({"name": "mnist", "version": 2}, {"id": 5}) and req.models == ({"id": 9},)
    for bad, match in (({"datasets": [{}] * 4}, "at most 3"), ({"datasets": [{"name": "a/b"}]}, "no '/'"),
                       ({"models": [{"id": 1, "version": 0}]}, "from 1"), ({"datasets": "mnist"}, "list"),
                       ({"models": [{"id": 1, "path": "/"}]}, "unknown key")):
        with pytest.raises(RequestError, match=match):
            parse_options(bad, CATALOG)
    mounts = assign_slots([{"kind": "dataset", "id": 1, "version": 2, "path": "/s/datasets/1/2"},
                           {"kind": "model", "id": 9, "version": 1, "path": "/s/models/9/1"},
                           {"kind": "dataset", "id": 5, "version": 1, "path": "/s/datasets/5/1"}])
    assert [(m.slot, m.kind, m.id, m.version) for m in mounts] == [
        ("data-1", "dataset", 1, 2), ("pretrain1", "model", 9, 1), ("data-2", "dataset", 5, 1)]
    assert [m.sub_path for m in mounts] == ["datasets/1/2", "models/9/1", "datasets/5/1"]


def test_runtime_mounts_versions_read_only(tmp_path):
    from gemhub.spawner.local import runtime
    from gemhub.spawner.request import Ref, WorkloadRequest

    mounts = assign_slots([{"kind": "dataset", "id": 1, "version": 2,
                            "path": str(layout.asset_version_dir(tmp_path, "dataset", 1, 2))},
                           {"kind": "model", "id": 9, "version": 1,
                            "path": str(layout.asset_version_dir(tmp_path, "model", 9, 1))}])
    req = WorkloadRequest("u", Ref(1, "w"), Ref(2, "p"), CATALOG.get("B1"), mounts=mounts)
    identity = runtime.Identity("gem-u", 1234, 1234, (1234,), str(tmp_path / "home"))
    host = runtime.HostSystem(root_entries=(), python=())
    spec = runtime.sandbox_spec(req, state_dir=str(tmp_path), identity=identity, host=host)
    table = {b.target: (b.source, b.kind) for b in spec.gemini}
    assert table["/gemini/data-1"] == (str(tmp_path / "datasets" / "1" / "2"), "ro")
    assert table["/gemini/pretrain1"] == (str(tmp_path / "models" / "9" / "1"), "ro")
    assert table["/gemini/data-2"] == (str(layout.readonly_empty(tmp_path)), "ro")
    assert req.persisted_options({"datasets": [{"name": "x"}]})["datasets"] == [{"id": 1, "version": 2}]


def test_spawn_form_offers_published_versions_and_parses_them():
    assets = [{"id": 3, "kind": "dataset", "name": "mnist", "workspace": "w", "visibility": "public",
               "versions": [{"number": 1, "state": "published"}, {"number": 2, "state": "published"},
                            {"number": 3, "state": "draft"}]},
              {"id": 4, "kind": "model", "name": "bert", "workspace": "w", "visibility": "private",
               "versions": [{"number": 1, "state": "published"}]}]
    html = form.render_asset_choices(assets, {"datasets": [{"id": 3, "version": 1}]})
    assert html.count('name="datasets"') == 3 and html.count('name="models"') == 3
    assert '<option value="3:1" selected>' in html and 'value="3:3"' not in html
    assert "/gemini/pretrain3" in html
    got = form.options_from_form({"workspace_id": ["1"], "datasets": ["3:2", "", ""], "models": ["4:1", "", ""]})
    assert got["datasets"] == [{"id": 3, "version": 2}] and got["models"] == [{"id": 4, "version": 1}]
    with pytest.raises(RequestError, match="chosen twice"):
        form.options_from_form({"datasets": ["3:1", "3:2"]})
    with pytest.raises(RequestError, match="<id>:<version>"):
        form.options_from_form({"datasets": ["mnist"]})
    assert Path(layout.asset_draft_dir("/s", "dataset", 3, 2)) == Path("/s/datasets/3/drafts/2")
