"""Start-up repair of what a crash leaves between a version's folder and its row (recovery.py),
and the draft lock every draft-changing operation holds (draftlock.py)."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import create_engine

from gemhub.services.common.db import make_sessionmaker
from gemhub.services.common.errors import Conflict
from gemhub.services.data import files
from gemhub.services.data.draftlock import DraftLocks
from gemhub.services.data.models import AuditEvent, Asset, Base, Version
from gemhub.services.data.recovery import recover


@pytest.fixture
def db(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'data.sqlite'}")
    Base.metadata.create_all(engine)
    with make_sessionmaker(engine, AuditEvent)() as s:
        yield s


def _asset(db, *versions):
    a = Asset(kind="dataset", name="d", workspace_id=1, workspace_name="w", visibility="workspace",
              created_by="ada", tags=[], description="")
    for number, state in versions:
        a.versions.append(Version(number=number, state=state, created_by="ada", size_bytes=0, file_count=0))
    db.add(a)
    db.commit()
    return a


def test_a_publish_cut_short_after_the_rename_is_finished(db, tmp_path):
    a = _asset(db, (1, "draft"))
    final = tmp_path / "datasets" / str(a.id) / "1"
    (final / "sub").mkdir(parents=True)
    (final / "sub" / "x.bin").write_bytes(b"12345")
    done = recover(db, tmp_path)
    assert any("finished publishing" in d for d in done)
    v = db.get(Version, a.versions[0].id)
    assert v.state == "published" and v.file_count == 1 and v.size_bytes == 5 and v.published is not None
    assert not os.stat(final / "sub" / "x.bin").st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_folders_without_rows_are_removed_so_the_number_can_publish_again(db, tmp_path):
    a = _asset(db, (1, "published"))
    base = tmp_path / "datasets" / str(a.id)
    (base / "1").mkdir(parents=True)
    orphan = base / "2"  # a save-output cut short: read-only, no row
    (orphan / "d").mkdir(parents=True)
    (orphan / "d" / "f").write_text("x")
    files.finish_publish(orphan)
    (base / "drafts" / "3").mkdir(parents=True)  # a discard cut short
    recover(db, tmp_path)
    assert (base / "1").is_dir() and not orphan.exists() and not (base / "drafts" / "3").exists()
    # the next version takes number 2 and publishes into the freed place
    draft = base / "drafts" / "2"
    draft.mkdir(parents=True)
    (draft / "f").write_text("y")
    files.publish(draft, base / "2")
    assert (base / "2" / "f").read_text() == "y"


def test_a_draft_row_without_a_folder_gets_an_empty_one(db, tmp_path):
    a = _asset(db, (1, "draft"))
    recover(db, tmp_path)
    assert (tmp_path / "datasets" / str(a.id) / "drafts" / "1").is_dir()
    assert recover(db, tmp_path) == []  # nothing left to repair


def test_the_draft_lock():
    locks = DraftLocks()
    with locks.hold(1, "being changed"), locks.hold(1, "being changed"):
        with pytest.raises(Conflict, match="being changed"):
            with locks.hold(1, "being published", exclusive=True):
                pass
        with locks.hold(2, "being published", exclusive=True):  # another asset
            pass
    with locks.hold(1, "being published", exclusive=True):
        for exclusive in (True, False):
            with pytest.raises(Conflict, match="being published"):
                with locks.hold(1, "being discarded", exclusive=exclusive):
                    pass
    assert not locks.busy(1) and not locks.busy(2)
