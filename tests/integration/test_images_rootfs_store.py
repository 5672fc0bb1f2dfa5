"""A version's root filesystem with buildah's overlay storage, on a real (tiny) image store
without a hub: exported as its container's mount bound read-only, special files left out,
mounted again after a reboot (mounts gone, container kept) or with its container gone,
idempotently, and unmounted with its container when the version is deleted."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from gemhub.services.images import build, rootfs
from gemhub.services.images.runner import Cancelled, Job, StepFailed
from gemhub.services.images.storage import Store
from imagehub import unmount_under

pytestmark = [pytest.mark.integration, pytest.mark.root]
REFERENCE = "localhost/gemhub/img-1:v1"
LAYERED = "localhost/gemhub/img-2:v1"


@pytest.fixture
def store(tmp_path):
    if os.geteuid() != 0 or shutil.which("buildah") is None:
        pytest.skip("needs root and buildah")
    state = tmp_path / "state"
    s = Store(str(state), "overlay")
    s.prepare()
    job = Job(tmp_path / "setup.log", 120)
    # a tiny image: a few files, a device node and a FIFO, a root folder others could write
    c = job.run(s.buildah("from", "scratch"), s.env(), capture=True).strip()
    tree = job.run(s.buildah("mount", c), s.env(), capture=True).strip()
    os.makedirs(f"{tree}/etc")
    os.makedirs(f"{tree}/dev")
    with open(f"{tree}/etc/os-release", "w") as f:
        f.write('PRETTY_NAME="tiny"\n')
    os.mknod(f"{tree}/dev/sda", 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    os.mkfifo(f"{tree}/etc/fifo")
    os.chmod(tree, 0o777)
    job.run(s.buildah("umount", c), s.env())
    job.run(s.buildah("commit", "--quiet", "--format", "oci", c, REFERENCE), s.env(), capture=True)
    job.run(s.buildah("rm", c), s.env(), capture=True)
    # and one more layer on it: special files of its own (one not even UTF-8), and a folder
    # of the layer below replaced by a link out of the image
    c = job.run(s.buildah("from", "--pull=never", REFERENCE), s.env(), capture=True).strip()
    tree = job.run(s.buildah("mount", c), s.env(), capture=True).strip()
    os.makedirs(f"{tree}/opt")
    os.mkfifo(f"{tree}/opt/pipe")
    os.mkfifo(os.fsencode(f"{tree}/opt/") + b"caf\xe9")
    shutil.rmtree(f"{tree}/dev")
    os.symlink(str(tmp_path / "outside"), f"{tree}/dev")
    job.run(s.buildah("umount", c), s.env())
    job.run(s.buildah("commit", "--quiet", "--format", "oci", c, LAYERED), s.env(), capture=True)
    job.run(s.buildah("rm", c), s.env(), capture=True)
    (tmp_path / "outside").mkdir()
    os.mkfifo(tmp_path / "outside" / "sda")
    yield s
    unmount_under(tmp_path)


def containers(store: Store) -> list[str]:
    out = subprocess.run(store.buildah("containers", "--format", "{{.ContainerName}}"), env=store.env(),
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_a_version_is_mounted_read_only_again_after_a_reboot_and_goes_when_deleted(store, tmp_path):
    job = Job(tmp_path / "build.log", 120)
    target = store.rootfs(3, 17)
    root = rootfs.VersionRoot(REFERENCE, target, 17)
    rootfs.export(store, job, root)
    assert rootfs.mounted(target)
    assert (target / "etc" / "os-release").read_text() == 'PRETTY_NAME="tiny"\n'
    assert not (target / "dev" / "sda").exists() and not (target / "etc" / "fifo").exists()
    st = target.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755  # sealed, whatever the image said
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    with pytest.raises(OSError, match="Read-only file system"):
        (target / "etc" / "new").write_text("x")
    options = subprocess.run(["findmnt", "-n", "-o", "OPTIONS", str(target)], capture_output=True,
                             text=True).stdout.split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options)
    assert containers(store) == ["gemhub-rootfs-17"]
    # the service restarting: nothing to do, nothing mounted twice
    assert rootfs.mount_all(store, job, [root]) == []
    assert sum(1 for line in open("/proc/self/mountinfo") if f" {target} " in line) == 1
    # a reboot: every mount gone, the container still in the store; the folder is empty
    unmount_under(tmp_path)
    assert not rootfs.mounted(target) and target.is_dir() and not any(target.iterdir())
    assert rootfs.mount_all(store, job, [root]) == []
    assert rootfs.mounted(target) and (target / "etc" / "os-release").exists()
    assert not (target / "dev" / "sda").exists()  # the container's writable layer kept its whiteouts
    # its container removed by hand: made again from the image
    unmount_under(tmp_path)
    subprocess.run(store.buildah("rm", "gemhub-rootfs-17"), env=store.env(), capture_output=True, check=True)
    assert rootfs.mount_all(store, job, [root]) == []
    assert (target / "etc" / "os-release").exists() and not (target / "etc" / "fifo").exists()
    assert containers(store) == ["gemhub-rootfs-17"]
    # a fresh export of the same version (a build the restart interrupted) replaces both
    rootfs.export(store, job, root)
    assert containers(store) == ["gemhub-rootfs-17"]
    assert sum(1 for line in open("/proc/self/mountinfo") if f" {target} " in line) == 1
    # deleted: unmounted, container and folder gone, the image's tag too
    build.remove(store, job, REFERENCE, target, 17)
    assert not rootfs.mounted(target) and not target.exists()
    assert containers(store) == []
    assert subprocess.run(store.buildah("inspect", "--type", "image", REFERENCE), env=store.env(),
                          capture_output=True).returncode != 0


def test_special_files_of_every_layer_are_left_out_and_links_never_followed(store, tmp_path):
    job = Job(tmp_path / "build.log", 120)
    base, layered = store.rootfs(None, 1), store.rootfs(4, 2)
    rootfs.export(store, job, rootfs.VersionRoot(REFERENCE, base, 1))
    rootfs.export(store, job, rootfs.VersionRoot(LAYERED, layered, 2))
    assert (layered / "etc" / "os-release").exists() and os.readlink(layered / "dev") == str(tmp_path / "outside")
    assert sorted(os.listdir(layered / "opt")) == [] and not (layered / "etc" / "fifo").exists()
    assert (tmp_path / "outside" / "sda").exists()  # the host's side of the link: untouched
    # each layer's special files were listed once, and kept by layer
    assert len(list((store.root / "special-files").iterdir())) == 2
    rootfs.remove(store, job, rootfs.VersionRoot(LAYERED, layered, 2))
    rootfs.export(store, job, rootfs.VersionRoot(LAYERED, layered, 2))
    assert os.listdir(layered / "opt") == [] and (tmp_path / "outside" / "sda").exists()
    said = [line for line in (tmp_path / "build.log").read_text().splitlines() if "special files left out" in line]
    assert [line.split()[1] for line in said] == ["2", "3", "3"]  # 2 of the base, 3 of the layered image


def test_a_version_whose_image_is_gone_stays_unmounted_and_says_why(store, tmp_path):
    job = Job(tmp_path / "mounts.log", 120)
    target = store.rootfs(None, 5)
    failed = rootfs.mount_all(store, job, [rootfs.VersionRoot("localhost/gemhub/img-9:v9", target, 5)])
    assert failed == [5]
    assert not rootfs.mounted(target)
    assert "could not be mounted" in (tmp_path / "mounts.log").read_text()
    # something else in the way of a mount point is never mounted over
    target.mkdir(parents=True, exist_ok=True)
    (target / "stray").write_text("x")
    with pytest.raises(StepFailed, match="in the way"):
        rootfs.mount(store, job, rootfs.VersionRoot(REFERENCE, target, 5))
    assert not rootfs.mounted(target) and containers(store) == []
    rootfs.remove(store, job, rootfs.VersionRoot(REFERENCE, target, 5))
    assert not target.exists()
    # a build's export that fails halfway leaves no container, mount or folder behind
    with pytest.raises(StepFailed):
        rootfs.export(store, job, rootfs.VersionRoot("localhost/gemhub/img-9:v9", target, 5))
    assert containers(store) == [] and not target.exists()
    cancelled = Job(tmp_path / "cancelled.log", 120)
    cancelled.cancel()
    with pytest.raises(Cancelled):
        rootfs.export(store, cancelled, rootfs.VersionRoot(REFERENCE, target, 5))
    assert containers(store) == [] and not rootfs.mounted(target) and not target.exists()


def test_a_finished_build_is_inspected_beside_its_export_and_an_oversized_one_leaves_nothing(store, tmp_path):
    job = Job(tmp_path / "build.log", 120)
    target = store.rootfs(6, 30)
    result = build.finish(store, job, REFERENCE, target, 30, 10**9)
    assert result.image_id and result.size_bytes > 0
    assert rootfs.mounted(target) and (target / "etc" / "os-release").exists()
    assert containers(store) == ["gemhub-rootfs-30"]
    rootfs.remove(store, job, rootfs.VersionRoot(REFERENCE, target, 30))
    assert containers(store) == [] and not target.exists()
    # over the size limit: failed, and the root filesystem the export made meanwhile is gone
    with pytest.raises(StepFailed, match="over the limit"):
        build.finish(store, Job(tmp_path / "big.log", 120), REFERENCE, target, 31, 1)
    assert containers(store) == [] and not rootfs.mounted(target) and not target.exists()
    # not in the store: failed the same way, nothing left
    with pytest.raises(StepFailed):
        build.finish(store, Job(tmp_path / "gone.log", 120), "localhost/gemhub/img-9:v9", target, 32, 10**9)
    assert containers(store) == [] and not target.exists()
