"""SFTP into drafts, without a hub: login names, the confined SFTP server, the draft lock
shared with publishing (services/ssh/drafts.py, services/data/files.py)."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

from gemhub.services.common.errors import Conflict
from gemhub.services.data import files
from gemhub.services.ssh.drafts import DraftLock, DraftSFTPServer, DraftTarget, draft_target, folder_of, open_draft
from gemhub.services.ssh.target import split_login


@pytest.mark.parametrize("login, want", [
    ("alice+dataset-3-1", DraftTarget("dataset", 3, 1)),
    ("alice+model-12-40", DraftTarget("model", 12, 40)),
    ("alice", None),
    ("alice+gpu", None),
    ("alice+dataset-3", None),  # no version: a server name
    ("alice+dataset-0-1", None),
    ("alice+dataset-3-0", None),
    ("alice+Dataset-3-1", None),
    ("alice+dataset-3-1-2", None),
    ("alice+dataset--3-1", None),
    ("alice+dataset-1234567890123-1", None),  # longer than any id
])
def test_draft_logins_are_recognised(login, want):
    user, server = split_login(login)
    assert user == "alice"
    assert draft_target(server) == want


def test_a_target_reads_well():
    assert DraftTarget("model", 7, 2).label == "model 7 version 2"


def test_the_data_service_must_name_the_folder_of_the_shared_layout():
    target = DraftTarget("dataset", 1, 2)
    good = {"path": "/s/datasets/1/drafts/2", "lock": "/s/datasets/1/drafts/2.lock"}
    assert folder_of(good, "/s", target) == ("/s/datasets/1/drafts/2", "/s/datasets/1/drafts/2.lock")
    for answer in ({}, {**good, "path": "/etc"}, {**good, "lock": "/etc/passwd"}, {**good, "path": "/s/datasets/1/2"}):
        with pytest.raises(ValueError, match="disagree"):
            folder_of(answer, "/s", target)


@pytest.fixture
def draft(tmp_path) -> Path:
    d = tmp_path / "datasets" / "1" / "drafts" / "1"
    files.make_draft(d)
    (tmp_path / "secret").write_text("outside")
    return d


@pytest.fixture
def server(draft) -> DraftSFTPServer:
    return DraftSFTPServer(None, str(draft))


def test_client_paths_stay_inside_the_draft(server, draft):
    root = str(draft).encode()
    assert server.map_path(b"/") == root + b"/"
    assert server.map_path(b"../../../secret") == root + b"/secret"
    assert server.map_path(b"/a/../../b") == root + b"/b"


def test_links_are_neither_made_nor_followed(server, draft, tmp_path):
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        server.symlink(b"/", b"/l")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        server.link(b"/a", b"/b")
    # a link that got there some other way is never followed
    os.symlink(tmp_path, draft / "out")
    with pytest.raises(asyncssh.SFTPPermissionDenied, match="links are not followed"):
        server.map_path(b"/out/secret")


def test_new_files_get_ordinary_modes_and_valid_names(server, draft):
    f = server.open(b"/data.bin", asyncssh.FXF_WRITE | asyncssh.FXF_CREAT,
                    asyncssh.SFTPAttrs(permissions=0o4777, uid=0, gid=0))
    server.write(f, 0, b"abc")
    server.fsetstat(f, asyncssh.SFTPAttrs(permissions=0o6777))
    server.close(f)
    server.setstat(b"/data.bin", asyncssh.SFTPAttrs(permissions=0o4755, mtime=1_000_000, atime=1_000_000))
    st = (draft / "data.bin").stat()
    assert st.st_mode & 0o7777 == 0o600 and st.st_mtime == 1_000_000
    server.mkdir(b"/sub", asyncssh.SFTPAttrs(permissions=0o777))
    assert (draft / "sub").stat().st_mode & 0o7777 == 0o700
    with pytest.raises(asyncssh.SFTPPermissionDenied, match="at most 64"):
        server.open(b"/" + b"n" * 65, asyncssh.FXF_WRITE | asyncssh.FXF_CREAT, asyncssh.SFTPAttrs())
    with pytest.raises(asyncssh.SFTPPermissionDenied, match="at most 64"):
        server.rename(b"/data.bin", b"/" + b"n" * 65)


def test_the_draft_folder_itself_cannot_go(server, draft):
    for op in (lambda: server.rmdir(b"/"), lambda: server.rmdir(b"/.."), lambda: server.remove(b"/"),
               lambda: server.rename(b"/", b"/x"), lambda: server.posix_rename(b"..", b"/x")):
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="top folder"):
            op()
    assert draft.is_dir()


def test_publishing_waits_for_open_sessions(draft, tmp_path):
    lock = open_draft(str(draft), str(files.lock_path(draft)), "dataset 1 version 1")
    second = DraftLock(str(files.lock_path(draft)))  # sessions share the draft
    with pytest.raises(Conflict, match="SFTP session"):
        with files.no_sftp_sessions(draft):
            pass
    lock.release()
    second.release()
    with files.no_sftp_sessions(draft):
        # while publishing, no session gets in
        with pytest.raises(ValueError, match="being published"):
            open_draft(str(draft), str(files.lock_path(draft)), "dataset 1 version 1")
        files.publish(draft, draft.parent.parent / "1")
    # once published, the draft folder is gone: a late session is refused
    with pytest.raises(ValueError, match="just been published"):
        open_draft(str(draft), str(files.lock_path(draft)), "dataset 1 version 1")


def test_a_session_that_never_started_does_not_block_publishing(draft):
    lock = DraftLock(str(files.lock_path(draft)))
    del lock  # the channel went before its session started: nothing releases it by hand
    with files.no_sftp_sessions(draft):
        pass
