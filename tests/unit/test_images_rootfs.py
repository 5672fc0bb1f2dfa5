"""Root filesystems of image versions, without buildah: the mount table as read, special
files left out, an image's size from its manifest, and what the spawner accepts as a
version's root (an empty folder is a version whose mount is gone, never a root)."""

from __future__ import annotations

import json
import os
import socket

import pytest

from gemhub.services.images import bootstrap, rootfs
from gemhub.services.images.runner import Job
from gemhub.services.images.storage import Store
from gemhub.spawner.local import imageroot


def test_mount_points_decode_mountinfo_escapes(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "51 22 0:60 / /var/lib/gemhub/state/images/rootfs/7 ro,nosuid,nodev - overlay overlay rw\n"
        "52 22 0:61 / /srv/with\\040space\\134x ro - overlay overlay rw\n")
    points = rootfs.mount_points(str(info))
    assert points == {"/", "/var/lib/gemhub/state/images/rootfs/7", "/srv/with space\\x"}
    assert rootfs.mounted(tmp_path / ".." / tmp_path.name / "x", {str(tmp_path / "x")})


def test_the_container_of_a_version_is_named_by_its_id():
    assert rootfs.container_name(42) == "gemhub-rootfs-42"
    with pytest.raises(ValueError):
        rootfs.container_name("42; rm -rf /")


def test_special_files_are_deleted_and_links_never_followed(tmp_path):
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "dev").mkdir(parents=True)
    outside.mkdir()
    os.mkfifo(outside / "keep-me")
    os.mkfifo(tree / "dev" / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "dev" / "sock"))
    sock.close()
    if os.geteuid() == 0:
        os.mknod(tree / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.symlink(outside, tree / "link")
    (tree / "file").write_text("kept")
    job = Job(tmp_path / "log", 60)
    removed = rootfs.prune_special_files(Store(str(tmp_path)), job, tree)
    assert removed == (3 if os.geteuid() == 0 else 2)
    assert sorted(p.name for p in tree.rglob("*")) == ["dev", "file", "link"]
    assert (outside / "keep-me").exists()


def test_a_folder_that_is_no_overlay_mount_is_walked_whole(tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    os.mkfifo(tree / "a" / "b" / "fifo")
    store = Store(str(tmp_path / "state"))
    assert rootfs.prune_container(store, Job(tmp_path / "log", 60), str(tree)) == 1
    assert not (tree / "a" / "b" / "fifo").exists()


def test_the_size_of_an_image_is_the_sum_of_its_layers():
    manifest = json.dumps({"layers": [{"size": 1000}, {"size": 24}]})
    assert bootstrap.layers_bytes(manifest) == 1024
    for bad in ("", "not json", json.dumps({"layers": []}), json.dumps({"layers": [{"size": -1}]}),
                json.dumps({"layers": [{"digest": "x"}]}), json.dumps([1])):
        assert bootstrap.layers_bytes(bad) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the spawner's checks want root-owned folders")
def test_the_spawner_refuses_a_missing_or_unmounted_root(tmp_path):
    parent = tmp_path / "images"
    parent.mkdir(mode=0o700)
    with pytest.raises(imageroot.ImageRootError, match="not exported yet"):
        imageroot._checked(parent / "7")
    (parent / "7").mkdir()
    with pytest.raises(imageroot.ImageRootError, match="not mounted yet"):
        imageroot._checked(parent / "7")
    (parent / "7" / "etc").mkdir()
    assert imageroot._checked(parent / "7") == parent / "7"
    os.chmod(parent, 0o777)
    with pytest.raises(imageroot.ImageRootError, match="writable by others"):
        imageroot._checked(parent / "7")


def test_the_images_etc_is_read_without_following_its_links(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    assert imageroot._image_file(root, "passwd").startswith("root:")
    os.symlink("/etc/hostname", root / "etc" / "group")
    with pytest.raises(OSError):
        imageroot._image_file(root, "group")
    os.mkfifo(root / "etc" / "shadow")
    with pytest.raises(OSError, match="not a regular file"):
        imageroot._image_file(root, "shadow")
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(root / "etc", other / "etc")  # /etc itself a link (to anywhere on the host)
    with pytest.raises(OSError):
        imageroot._image_file(other, "passwd")
