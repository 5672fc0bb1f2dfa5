"""A built version's root filesystem for the local runtime, at the folder the spawner reads
(``layout.image_rootfs_dir``); blocking, run in the build's or the service's worker threads.

Overlay storage (the default): nothing is copied. Each version keeps one buildah working
container (``gemhub-rootfs-<version id>``) whose mount is bound read-only (nosuid, nodev)
at the version's folder: an export costs a ``buildah from`` and a mount. Device nodes,
FIFOs and sockets are deleted in the container's own writable layer (whiteouts) before the
bind, so they never reach an environment; the layers the image store shares stay as built.
Mounts do not survive a reboot, containers do: the service mounts every built version
again when it starts (:func:`mount_all`), before it answers; until then the folder is
empty and the spawner says the version is not mounted yet.

vfs storage: ``buildah from`` copies the whole image anyway, so the version's files are
copied into the folder, sharing the files its build did not change with its base's copy
(hard links).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import threading
from pathlib import Path
from typing import Iterable, NamedTuple

from .runner import Job, StepFailed
from .storage import Store

MOUNTINFO = "/proc/self/mountinfo"
BIND_OPTIONS = "ro,nosuid,nodev"
# find's test for device nodes, FIFOs and sockets
SPECIAL = ("(", "-type", "b", "-o", "-type", "c", "-o", "-type", "p", "-o", "-type", "s", ")")


class VersionRoot(NamedTuple):
    """What mounting one version's root filesystem needs."""

    reference: str  # the version's local reference (storage.local_reference)
    target: Path  # its folder (Store.rootfs)
    version_id: int


def container_name(version_id: int) -> str:
    return f"gemhub-rootfs-{int(version_id)}"


def mount_points(mountinfo: str = MOUNTINFO) -> set[str]:
    """Every mount point of this mount namespace (octal escapes of spaces etc. decoded)."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        fields = (line.split(" ", 5) for line in f)
        return {_unescape(parts[4]) for parts in fields if len(parts) > 4}


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounted(path: Path, points: set[str] | None = None) -> bool:
    return os.path.abspath(path) in (mount_points() if points is None else points)


def prune_special_files(store: Store, job: Job, root: str | os.PathLike) -> int:
    """Delete device nodes, FIFOs and sockets under ``root`` (environments get their
    devices from the platform, and a FIFO in an image many environments share would be a
    channel between them); returns how many went. ``find`` never follows links and
    deletes relative to the folder it read (a tree written by a build is never trusted)."""
    out = job.run(["find", os.fspath(root), "-xdev", *SPECIAL, "-print0", "-delete"], store.env(),
                  "removing special files", capture=True)
    return out.count("\0")


def prune_container(store: Store, job: Job, merged: str) -> int:
    """:func:`prune_special_files` for a fresh container's overlay mount, without walking
    the whole image: a special file of the mount is one of some layer's, so each layer's
    special files are listed once (layers never change; the list is kept by layer id)
    and only those paths are looked at in the mount. Falls back to the walk when the
    mount is not the overlay mount expected."""
    layers = _overlay_layers(store, merged)
    if layers is None:
        return prune_special_files(store, job, merged)
    try:
        return _prune_layered(store, job, merged, *layers)
    except (OSError, subprocess.SubprocessError):
        return prune_special_files(store, job, merged)


def _prune_layered(store: Store, job: Job, merged: str, lowers: list[Path], upper: Path) -> int:
    candidates: set[str] = set(_special_paths(store, job, upper))  # the container's own layer: never cached
    cache = store.root / "special-files"
    cache.mkdir(mode=0o700, exist_ok=True)
    for diff in lowers:
        listed = cache / diff.parent.name
        try:
            paths = listed.read_text(encoding="utf-8", errors="surrogateescape").split("\0")
        except FileNotFoundError:
            paths = _special_paths(store, job, diff)
            # a name of its own: two builds may list the same new layer at once
            tmp = listed.with_name(f".{listed.name}.{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_text("\0".join(paths), encoding="utf-8", errors="surrogateescape")
            tmp.replace(listed)
        candidates.update(p for p in paths if p)
    root = os.open(merged, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return sum(_unlink_special(root, rel) for rel in sorted(candidates))
    finally:
        os.close(root)


def _special_paths(store: Store, job: Job, folder: str | os.PathLike) -> list[str]:
    """Relative paths of the special files under ``folder`` (whiteouts included: they
    are character devices too, and simply absent from the mount)."""
    job.check()
    # bytes, not the log's text: a name that is not UTF-8 must still match in the mount
    out = subprocess.run(["find", os.fspath(folder), "-xdev", *SPECIAL, "-printf", "%P\\0"], env=store.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, timeout=600).stdout
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def _overlay_layers(store: Store, merged: str) -> tuple[list[Path], Path] | None:
    """The diff folders of the read-only layers and the writable one under a container's
    overlay mount (from the mount table), or None when they are not what is expected."""
    home = os.path.realpath(store.storage / "overlay")
    target = os.path.realpath(merged)
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            head, sep, tail = line.rstrip("\n").partition(" - ")
            fields = head.split(" ")
            if not sep or len(fields) < 5 or _unescape(fields[4]) != target:
                continue
            parts = tail.split(" ")
            if len(parts) < 3 or parts[0] != "overlay":
                return None
            options = dict(o.split("=", 1) for o in parts[2].split(",") if "=" in o)
            if not options.get("lowerdir") or not options.get("upperdir"):
                return None
            dirs = [Path(os.path.realpath(os.path.join(home, _unescape(d)))) for d in options["lowerdir"].split(":")]
            upper = Path(os.path.realpath(os.path.join(home, _unescape(options["upperdir"]))))
            for d in (*dirs, upper):
                if d.name != "diff" or str(d.parent.parent) != home or not d.is_dir():
                    return None
            return dirs, upper
    return None


def _unlink_special(root_fd: int, rel: str) -> bool:
    """Delete ``rel`` under the folder ``root_fd`` if it is a special file there, never
    following a link on the way (a later layer may have made a folder a link)."""
    *folders, name = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for part in folders:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False
        os.unlink(name, dir_fd=fd)
        return True
    except OSError:  # gone in the mount (a whiteout, a later layer), or a link on the way
        return False
    finally:
        os.close(fd)


def _seal(root: str | os.PathLike) -> None:
    """The root folder of what environments see: root's, not writable by anyone else
    (whatever a RUN step did to ``/``); the spawner checks it before every start."""
    os.chown(root, 0, 0, follow_symlinks=False)
    os.chmod(root, 0o755)


def _folder(target: Path) -> None:
    """The version's folder (a mount point), its parent root-only."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o700)  # per-user accounts never reach an image's files directly
    try:
        target.mkdir(mode=0o755)
    except FileExistsError:
        if target.is_symlink() or not target.is_dir() or any(target.iterdir()):
            raise StepFailed(f"{target} is in the way of the root filesystem (not an empty folder)") from None


def _bind(store: Store, job: Job, source: str, target: Path) -> None:
    job.run(["mount", "--bind", "-o", BIND_OPTIONS, source, str(target)], store.env(), "mount")


def _remove_container(store: Store, job: Job, name: str) -> None:
    """``buildah rm`` (which unmounts it first); a container that is not there is fine."""
    try:
        job.run(store.buildah("rm", name), store.env(), "buildah rm", capture=True, quiet=True)
    except StepFailed:
        pass


def _new_container(store: Store, job: Job, name: str, reference: str) -> None:
    """A fresh working container of the image (one an interrupted export left goes first)."""
    argv = store.buildah("from", "--pull=never", "--name", name, reference)
    try:
        job.run(argv, store.env(), "buildah from", capture=True, quiet=True)
    except StepFailed:
        _remove_container(store, job, name)
        job.run(argv, store.env(), "buildah from", capture=True)


def _unbind(store: Store, job: Job, target: Path) -> None:
    if not mounted(target):
        return
    try:
        job.run(["umount", str(target)], store.env(), "umount")
    except StepFailed:
        # busy (a shell on the host inside it): detach now, the kernel frees it when unused
        job.run(["umount", "--lazy", str(target)], store.env(), "umount --lazy")


def mount(store: Store, job: Job, root: VersionRoot, reuse: bool = False) -> None:
    """Bind the version's container's mount read-only at its folder.

    ``reuse=False`` (a build's export): a container or mount an interrupted earlier export
    left goes first, the container is made afresh from the version's image. ``reuse=True``
    (the service starting): a folder already mounted stays, an existing container is
    mounted again, a missing one is made from the image in the store."""
    name = container_name(root.version_id)
    if mounted(root.target):
        if reuse:
            return
        _unbind(store, job, root.target)
    _folder(root.target)
    merged = ""
    if reuse:
        try:
            merged = job.run(store.buildah("mount", name), store.env(), "buildah mount", capture=True,
                             quiet=True).strip()
        except StepFailed:
            job.say(f"[gemhub] {name} is not in the image store; making it again from {root.reference}")
    if not merged:
        _new_container(store, job, name, root.reference)
        merged = job.run(store.buildah("mount", name), store.env(), "buildah mount", capture=True).strip()
        removed = prune_container(store, job, merged)
        if removed:
            job.say(f"[gemhub] {removed} device or special files left out of the root filesystem")
    _seal(merged)
    _bind(store, job, merged, root.target)


def copy_argv(source: str, target: str, link_dest: Path | None = None) -> list[str]:
    """Copy a tree as is (owners, modes, times, links, hard links), no device files.
    With rsync and ``link_dest`` (the base version's root filesystem), files the build did
    not change are hard links to the base's instead of copies: exporting a version costs
    what it added, not the whole base again."""
    if shutil.which("rsync"):
        argv = ["rsync", "-rlptgoH", "--quiet", "--numeric-ids", "--one-file-system"]
        if link_dest is not None and link_dest.is_dir():
            argv.append(f"--link-dest={link_dest}")
        return argv + [f"{source}/", f"{target}/"]
    return ["cp", "-a", "--one-file-system", f"{source}/.", f"{target}/"]


def copy(store: Store, job: Job, root: VersionRoot, link_dest: Path | None = None) -> None:
    """The vfs way: copy the image's files into the version's folder (made once)."""
    target = root.target
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o700)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    env = store.env()
    container = job.run(store.buildah("from", "--pull=never", root.reference), env, "buildah from",
                        capture=True).strip()
    try:
        merged = job.run(store.buildah("mount", container), env, "buildah mount", capture=True).strip()
        staging.mkdir(mode=0o755)
        job.run(copy_argv(merged, str(staging), link_dest), env, "copy root filesystem")
        job.run(store.buildah("umount", container), env, "buildah umount")
    finally:
        _remove_container(store, job, container)
    removed = prune_special_files(store, job, staging)
    if removed:
        job.say(f"[gemhub] {removed} device or special files left out of the root filesystem")
    _seal(staging)
    staging.rename(target)


def export(store: Store, job: Job, root: VersionRoot, link_dest: Path | None = None) -> None:
    """A freshly built version's root filesystem: mounted (overlay) or copied (vfs)."""
    if store.driver != "overlay":
        copy(store, job, root, link_dest)
        return
    try:
        mount(store, job, root)
    except BaseException:
        # a failed or cancelled export leaves no container or mount behind (a job of its
        # own: the build's refuses every step once it is cancelled)
        remove(store, Job(job.log_path, 120), root)
        raise


def remove(store: Store, job: Job, root: VersionRoot) -> None:
    """A deleted version's root filesystem: unmounted and its container removed, or its copy
    deleted. The folder goes only once nothing is mounted there (never a walk into a mount)."""
    _unbind(store, job, root.target)
    _remove_container(store, job, container_name(root.version_id))
    if mounted(root.target):
        job.say(f"[gemhub] {root.target} is still mounted; left in place")
        return
    shutil.rmtree(root.target, ignore_errors=True)


def mount_all(store: Store, job: Job, roots: Iterable[VersionRoot]) -> list[int]:
    """At the service's start: every built version mounted again (after a reboot the
    mounts are gone, the containers are not). Idempotent: mounted ones are left alone, and
    so are copies (vfs, or made before versions were mounted). Returns the ids of the
    versions that could not be mounted (their spawns say so; the log says why)."""
    if store.driver != "overlay":
        return []
    points = mount_points()
    failed = []
    for root in roots:
        if mounted(root.target, points) or (root.target.is_dir() and any(root.target.iterdir())):
            continue
        try:
            mount(store, job, root, reuse=True)
        except StepFailed as e:
            job.say(f"[gemhub] version {root.version_id}: its root filesystem could not be mounted: {e.message}")
            failed.append(root.version_id)
    return failed
