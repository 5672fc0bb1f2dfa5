"""Safe extraction: a malicious archive corpus built here, each refused with its reason,
nothing written outside the draft (nor inside it); good archives extract completely."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from gemhub.services.data import archives
from gemhub.services.data.archives import ArchiveError, Entry, Limits


def tree(root: Path) -> dict[str, str]:
    """Every path under root with its kind and content (what 'unchanged' means)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = "link" if os.path.islink(p) else Path(p).read_bytes().hex()[:64]
    return out


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def tinfo(name: str, type_=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.mode = 0o644
    return info


def make_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def zip_symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.fixture
def place(tmp_path):
    """(draft, outside): a draft with one file in it, and a sibling folder that must stay empty."""
    draft = tmp_path / "work" / "draft"
    draft.mkdir(parents=True)
    (draft / "keep.txt").write_text("kept")
    outside = tmp_path / "work" / "outside"
    outside.mkdir()
    return draft, outside


def bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("zeros.bin", "w") as f:
            chunk = bytes(1 << 20)
            for _ in range(64):
                f.write(chunk)
    return path


def many_files(path: Path, n: int) -> Path:
    with tarfile.open(path, "w") as tf:
        for i in range(n):
            info = tinfo(f"f/{i}.txt")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    return path


CORPUS = {
    "zip-slip": (lambda p: make_zip(p / "slip.zip", [("ok.txt", b"ok"), ("../../outside/evil.txt", b"evil")]),
                 "path-escape"),
    "tar-slip": (lambda p: make_tar(p / "slip.tar.gz", [(tinfo("a/../../outside/evil.txt"), b"evil")]),
                 "path-escape"),
    "absolute-tar": (lambda p: make_tar(p / "abs.tar", [(tinfo("/tmp/evil-abs.txt"), b"evil")], "w"),
                     "absolute-path"),
    "absolute-zip": (lambda p: make_zip(p / "abs.zip", [(zipfile.ZipInfo("/tmp/evil-abs.txt"), b"evil")]),
                     "absolute-path"),
    "symlink-escape": (lambda p: make_tar(p / "sym.tar.gz", [(tinfo("etc", tarfile.SYMTYPE, "/etc"), None),
                                                             (tinfo("etc/evil"), b"evil")]), "link"),
    "symlink-relative-escape": (lambda p: make_tar(p / "sym2.tar", [
        (tinfo("up", tarfile.SYMTYPE, "../../outside"), None)], "w"), "link"),
    "hardlink-escape": (lambda p: make_tar(p / "hard.tar.gz", [
        (tinfo("passwd", tarfile.LNKTYPE, "../../../etc/passwd"), None)]), "link"),
    "zip-symlink": (lambda p: make_zip(p / "sym.zip", [(zip_symlink("link", "/etc/passwd"), b"/etc/passwd")]),
                    "link"),
    "device-node": (lambda p: make_tar(p / "dev.tar", [(tinfo("null", tarfile.CHRTYPE), None)], "w"),
                    "special-file"),
    "fifo": (lambda p: make_tar(p / "fifo.tar", [(tinfo("pipe", tarfile.FIFOTYPE), None)], "w"), "special-file"),
    "zip-bomb": (lambda p: bomb(p / "bomb.zip"), "compression-ratio"),
    "too-many-files": (lambda p: many_files(p / "many.tar", 10_001), "too-many-files"),
    "long-name": (lambda p: make_zip(p / "long.zip", [("d/" + "n" * 65 + ".txt", b"x")]), "bad-name"),
    "duplicate": (lambda p: make_zip(p / "dup.zip", [("a.txt", b"1"), ("a.txt", b"2")]), "duplicate"),
    "file-then-folder": (lambda p: make_tar(p / "ff.tar", [(tinfo("a"), b"1"), (tinfo("a/b"), b"2")], "w"),
                         "duplicate"),
    "not-an-archive": (lambda p: (p / "plain.zip").write_bytes(b"hello") and p / "plain.zip", "not-an-archive"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # zipfile warns about the duplicate name
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_malicious_archive_is_refused_and_changes_nothing(case, place, tmp_path):
    draft, outside = place
    build, reason = CORPUS[case]
    src = tmp_path / "src"
    src.mkdir()
    archive = build(src)
    before, before_work = tree(draft), tree(tmp_path / "work")
    with pytest.raises(ArchiveError) as e:
        archives.extract(archive, draft)
    assert e.value.reason == reason, e.value.message
    assert e.value.status == 400 and e.value.message
    assert tree(draft) == before
    assert tree(tmp_path / "work") == before_work
    assert list(outside.iterdir()) == []
    assert not Path("/tmp/evil-abs.txt").exists()


def test_lying_header_is_caught_while_streaming(place, tmp_path):
    """A tar member that holds more than the total cap aborts mid-way and leaves no trace."""
    draft, _ = place
    archive = make_tar(tmp_path / "big.tar", [(tinfo("a.bin"), bytes(3000)), (tinfo("b.bin"), bytes(3000))], "w")
    before = tree(draft)
    with pytest.raises(ArchiveError) as e:
        archives.extract(archive, draft, Limits(max_total_bytes=4000))
    assert e.value.reason == "too-big"
    assert tree(draft) == before


def test_zip_and_tar_gz_extract_into_their_own_folders(place, tmp_path):
    draft, _ = place
    z = make_zip(tmp_path / "images.zip", [("cats/1.txt", b"meow"), ("cats/", b""), ("dogs/2.txt", b"woof")])
    t = make_tar(tmp_path / "labels.tar.gz", [(tinfo("./labels/train.csv"), b"a,b\n1,2\n")])
    r1 = archives.extract(z, draft)
    r2 = archives.extract(t, draft)
    assert (r1.folder, r1.files, r1.bytes) == ("images", 2, 8)
    assert (draft / "images" / "cats" / "1.txt").read_bytes() == b"meow"
    # every member in one top folder: extracted as that folder, not labels/labels/
    assert r2.folder == "labels" and (draft / "labels" / "train.csv").read_text() == "a,b\n1,2\n"
    again = archives.extract(z, draft)
    assert again.folder == "images-2"
    assert sorted(p.name for p in draft.iterdir()) == ["images", "images-2", "keep.txt", "labels"]
    assert oct((draft / "images" / "cats" / "1.txt").stat().st_mode & 0o777) == "0o644"


def test_a_zip_of_one_folder_extracts_as_that_folder(place, tmp_path):
    draft, _ = place
    z = make_zip(tmp_path / "download (1).zip", [("sample/", b""), ("sample/a.txt", b"A"), ("sample/sub/b.txt", b"B")])
    r = archives.extract(z, draft)
    assert (r.folder, r.files) == ("sample", 2)
    assert (draft / "sample" / "a.txt").read_bytes() == b"A"
    assert (draft / "sample" / "sub" / "b.txt").read_bytes() == b"B"
    assert not (draft / "sample" / "sample").exists()
    assert archives.extract(z, draft).folder == "sample-2"  # taken: the usual suffix
    named = archives.extract(z, draft, folder="mine")  # a name the person chose holds the contents
    assert (draft / "mine" / "a.txt").exists()
    # a lone file, or several top entries, still get a folder named after the archive
    lone = make_zip(tmp_path / "one.zip", [("only.txt", b"x")])
    assert archives.extract(lone, draft).folder == "one" and (draft / "one" / "only.txt").exists()
    assert named.folder == "mine"


@pytest.mark.parametrize("names, top", [
    (["a/", "a/x"], "a"), (["a/x", "a/y/z"], "a"), (["a/"], "a"), (["a"], None), (["a/x", "b/x"], None),
    (["a/x", "b"], None), ([], None),
])
def test_single_top_folder(names, top):
    planned = [(n.rstrip("/").split("/"), Entry(n, "dir" if n.endswith("/") else "file")) for n in names]
    assert archives.single_top_folder(planned) == top


def test_check_entries_rules_are_pure():
    ok = archives.check_entries([Entry("./a/", "dir"), Entry("a/b.txt", "file", 5)], 100, Limits())
    assert [p for p, _ in ok] == [["a"], ["a", "b.txt"]]
    with pytest.raises(ArchiveError, match="C:"):
        archives.check_entries([Entry("C:/x", "file", 1)], 1, Limits())
    with pytest.raises(ArchiveError) as e:
        archives.check_entries([Entry("x", "file", 10)], 1, Limits(max_entries=0))
    assert e.value.reason == "too-many-files"


def test_folder_names():
    assert archives.folder_name("data.tar.gz") == "data"
    assert archives.folder_name("Weights.ZIP") == "Weights"
    assert archives.folder_name("x.rar") == "x"
    assert archives.is_archive_name("a.tgz") and not archives.is_archive_name("a.txt")
