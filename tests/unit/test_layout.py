from pathlib import Path

import pytest

from gemhub.spawner import layout


def test_project_dirs():
    code, output = layout.project_dirs("/s", 3, 7)
    assert code == Path("/s/workspaces/3/projects/7/code")
    assert output == Path("/s/workspaces/3/projects/7/output")


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "", True, "../x", "-x"])
def test_ids_cannot_escape(bad):
    with pytest.raises(layout.LayoutError):
        layout.project_dirs("/s", bad, 1)
    with pytest.raises(layout.LayoutError):
        layout.project_dirs("/s", 1, bad)


def test_user_paths():
    assert layout.user_home("/s", "alice") == Path("/s/users/alice/home")
    assert layout.user_gemini_root("/s", "alice") == Path("/s/users/alice/gemini")
    for bad in ("", "..", "a/b"):
        with pytest.raises(layout.LayoutError):
            layout.user_dir("/s", bad)


def test_mount_table():
    mounts = layout.mount_table("/s", 1, 2)
    by = {m.name: m for m in mounts}
    assert [m.name for m in mounts] == ["code", "output", "data-1", "data-2", "data-3",
                                        "pretrain1", "pretrain2", "pretrain3"]
    assert not by["code"].readonly and not by["output"].readonly
    assert by["code"].target == "/gemini/code"
    for slot in layout.READONLY_SLOTS:
        assert by[slot].readonly
        assert by[slot].source == Path("/s/readonly/empty")


def test_mount_table_with_selected_versions():
    mounts = layout.mount_table("/s", 1, 2, data=(Path("/d/1"),), pretrain=(Path("/m/a"), Path("/m/b")))
    by = {m.name: m.source for m in mounts}
    assert by["data-1"] == Path("/d/1") and by["data-2"] == Path("/s/readonly/empty")
    assert by["pretrain2"] == Path("/m/b") and by["pretrain3"] == Path("/s/readonly/empty")
    with pytest.raises(layout.LayoutError):
        layout.mount_table("/s", 1, 2, data=(Path("/a"),) * 4)
