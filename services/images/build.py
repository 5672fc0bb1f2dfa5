"""One image version from recipe to root filesystem (blocking; see runner.Job).

Steps: the Debian root when the recipe starts there, ``buildah bud`` in the build
sandbox (storage.sandboxed), the size limit, the export of the image as a read-only root
filesystem for the local runtime, and the push to the registry for Kubernetes.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import bootstrap
from .runner import Job, StepFailed
from .storage import Store, bud_argv, sandboxed


@dataclass(frozen=True)
class BuildPlan:
    reference: str  # local reference of the version (storage.local_reference)
    dockerfile: Path
    context: Path
    rootfs: Path  # where the read-only root filesystem goes
    max_bytes: int
    labels: dict = field(default_factory=dict)
    build_args: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # more local tags (official images: by recipe)
    debian_root: bool = False  # the recipe starts from the Debian root (bootstrap it first)
    apt_mirror: str = ""
    cache_dir: str = ""
    push_to: str = ""  # registry reference ("" when no registry is configured)
    tls_verify: bool = True
    link_dest: Path | None = None  # the base version's root filesystem (unchanged files are linked)


@dataclass
class BuildResult:
    image_id: str = ""
    size_bytes: int = 0
    env: list[str] = field(default_factory=list)
    pushed: str = ""
    push_error: str = ""


def tree_bytes(root: Path) -> int:
    """Bytes a tree holds on disk (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def prune_special_files(root: Path) -> int:
    """Remove device nodes, FIFOs and sockets from an exported tree (environments get
    their devices from the platform); returns how many went."""
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.unlink(path)
                removed += 1
    return removed


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


def export_rootfs(store: Store, job: Job, reference: str, target: Path, link_dest: Path | None = None) -> None:
    """Copy the image's files into ``target`` (made once; read-only for environments)."""
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o700)  # per-user accounts never reach an image's files directly
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    env = store.env()
    container = job.run(store.buildah("from", "--pull=never", reference), env, "buildah from", capture=True).strip()
    try:
        mount = job.run(store.buildah("mount", container), env, "buildah mount", capture=True).strip()
        staging.mkdir(mode=0o755)
        job.run(copy_argv(mount, str(staging), link_dest), env, "copy root filesystem")
        job.run(store.buildah("umount", container), env, "buildah umount")
    finally:
        job.run(store.buildah("rm", container), env, "buildah rm", capture=True)
    removed = prune_special_files(staging)
    if removed:
        job.say(f"[gemhub] {removed} device or special files left out of the root filesystem")
    os.chmod(staging, 0o755)
    staging.rename(target)


def bud(store: Store, job: Job, plan: BuildPlan) -> None:
    """``buildah bud`` of the plan in the build sandbox (after the Debian root, if needed)."""
    if plan.debian_root:
        bootstrap.ensure(store, job, plan.cache_dir or store.root / "cache", plan.apt_mirror)
    argv = bud_argv(store, plan.dockerfile, plan.context, plan.reference, plan.labels, plan.build_args)
    job.say(f"[gemhub] building {plan.reference}")
    job.run(sandboxed(store, argv, binds=[plan.context], ro_binds=[plan.dockerfile]), store.env(), "the build")
    for alias in plan.aliases:
        job.run(store.buildah("tag", plan.reference, alias), store.env(), "buildah tag")


def finish(store: Store, job: Job, reference: str, rootfs: Path, max_bytes: int, push_to: str = "",
           tls_verify: bool = True, link_dest: Path | None = None) -> BuildResult:
    """A built image's id and ENV, its root filesystem (and size limit), its push."""
    result = BuildResult()
    found = bootstrap.inspect(store, job, reference)
    if found is None:
        raise StepFailed(f"the build finished but {reference} is not in the image store")
    result.image_id = found["id"]
    result.env = list(found["config"].get("Env") or [])
    job.say("[gemhub] exporting the root filesystem")
    export_rootfs(store, job, reference, rootfs, link_dest)
    result.size_bytes = tree_bytes(rootfs)
    job.say(f"[gemhub] image size {result.size_bytes / 1e6:.1f} MB")
    if result.size_bytes > max_bytes:
        shutil.rmtree(rootfs, ignore_errors=True)
        raise StepFailed(f"the image is {result.size_bytes / 1e9:.2f} GB, over the limit of {max_bytes / 1e9:.2f} GB")
    if push_to:
        result.pushed, result.push_error = push(store, job, reference, push_to, tls_verify)
    return result


def push(store: Store, job: Job, reference: str, push_to: str, tls_verify: bool = True) -> tuple[str, str]:
    """(pushed reference, "") or ("", why not): the local runtime can use a version whose
    push failed, and the push can be retried."""
    job.say(f"[gemhub] pushing to {push_to}")
    try:
        job.run(store.buildah("push", f"--tls-verify={'true' if tls_verify else 'false'}", reference,
                              f"docker://{push_to}"), store.env(), "buildah push")
    except StepFailed as e:
        job.say(f"[gemhub] push failed: {e.message}")
        return "", e.message
    return push_to, ""


def execute(store: Store, job: Job, plan: BuildPlan) -> BuildResult:
    bud(store, job, plan)
    return finish(store, job, plan.reference, plan.rootfs, plan.max_bytes, plan.push_to, plan.tls_verify,
                  plan.link_dest)


def remove(store: Store, job: Job, reference: str, rootfs: Path) -> None:
    """Delete a version: its root filesystem and its tag in the store (layers a newer
    version shares stay)."""
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        job.run(store.buildah("rmi", reference), store.env(), "buildah rmi", quiet=True)
    except StepFailed:
        job.say(f"[gemhub] {reference} was not in the image store")
