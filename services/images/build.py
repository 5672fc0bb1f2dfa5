"""One image version from recipe to root filesystem (blocking; see runner.Job).

Steps: the Debian root when the recipe starts there, ``buildah bud`` in the build
sandbox (storage.sandboxed), the size limit, the image's read-only root filesystem for the
local runtime (rootfs.py: mounted, or copied with vfs), and the push to the registry for
Kubernetes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import bootstrap
from . import rootfs as rootfs_mod
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
    link_dest: Path | None = None  # the base version's copied root filesystem (vfs: unchanged files are linked)
    version_id: int = 0  # the version's id (names its root filesystem's container; 0: never exported)


@dataclass
class BuildResult:
    image_id: str = ""
    size_bytes: int = 0
    env: list[str] = field(default_factory=list)
    pushed: str = ""
    push_error: str = ""


def tree_bytes(root: Path) -> int:
    """Bytes a tree holds on disk (hard links counted once): the size of an image whose
    manifest gives none."""
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


def bud(store: Store, job: Job, plan: BuildPlan) -> None:
    """``buildah bud`` of the plan in the build sandbox (after the Debian root, if needed)."""
    if plan.debian_root:
        bootstrap.ensure(store, job, plan.cache_dir or store.root / "cache", plan.apt_mirror)
    argv = bud_argv(store, plan.dockerfile, plan.context, plan.reference, plan.labels, plan.build_args)
    job.say(f"[gemhub] building {plan.reference}")
    job.run(sandboxed(store, argv, binds=[plan.context], ro_binds=[plan.dockerfile]), store.env(), "the build")
    for alias in plan.aliases:
        job.run(store.buildah("tag", plan.reference, alias), store.env(), "buildah tag")


def finish(store: Store, job: Job, reference: str, rootfs: Path, version_id: int, max_bytes: int,
           push_to: str = "", tls_verify: bool = True, link_dest: Path | None = None) -> BuildResult:
    """A built image's id, ENV and size (and size limit), its root filesystem, its push.

    With overlay storage the export is a mount, so ``buildah inspect`` runs beside it (two
    short buildah processes at once instead of one after the other) and an image over the
    size limit loses its root filesystem again; a copy (vfs) starts only once the size is
    known to be within the limit."""
    root = rootfs_mod.VersionRoot(reference, rootfs, version_id)
    if store.driver == "overlay":
        with ThreadPoolExecutor(1) as pool:
            inspecting = pool.submit(bootstrap.inspect, store, job, reference)
            job.say("[gemhub] exporting the root filesystem")
            rootfs_mod.export(store, job, root, link_dest)  # removes what it made if it fails
        try:
            found = inspecting.result()
            result = _inspected(job, reference, found, max_bytes)
        except BaseException:
            # a job of its own: a cancelled build's refuses every step
            rootfs_mod.remove(store, Job(job.log_path, 120), root)
            raise
    else:
        found = bootstrap.inspect(store, job, reference)
        result = _inspected(job, reference, found, max_bytes)
        job.say("[gemhub] exporting the root filesystem")
        rootfs_mod.export(store, job, root, link_dest)
    if found["size"] is None:
        result.size_bytes = tree_bytes(rootfs)
        try:
            _check_size(job, result.size_bytes, max_bytes)
        except StepFailed:
            rootfs_mod.remove(store, job, root)
            raise
    if push_to:
        result.pushed, result.push_error = push(store, job, reference, push_to, tls_verify)
    return result


def _inspected(job: Job, reference: str, found: dict | None, max_bytes: int) -> BuildResult:
    """The result as far as ``buildah inspect`` tells it (no size when the manifest gives none)."""
    if found is None:
        raise StepFailed(f"the build finished but {reference} is not in the image store")
    result = BuildResult(image_id=found["id"], env=list(found["config"].get("Env") or []))
    if found["size"] is not None:
        result.size_bytes = found["size"]
        _check_size(job, result.size_bytes, max_bytes)
    return result


def _check_size(job: Job, size: int, max_bytes: int) -> None:
    job.say(f"[gemhub] image size {size / 1e6:.1f} MB")
    if size > max_bytes:
        raise StepFailed(f"the image is {size / 1e9:.2f} GB, over the limit of {max_bytes / 1e9:.2f} GB")


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
    return finish(store, job, plan.reference, plan.rootfs, plan.version_id, plan.max_bytes, plan.push_to,
                  plan.tls_verify, plan.link_dest)


def remove(store: Store, job: Job, reference: str, rootfs: Path, version_id: int) -> None:
    """Delete a version: its root filesystem (unmounted, its container removed) and its tag
    in the store (layers a newer version shares stay)."""
    rootfs_mod.remove(store, job, rootfs_mod.VersionRoot(reference, rootfs, version_id))
    try:
        job.run(store.buildah("rmi", reference), store.env(), "buildah rmi", quiet=True)
    except StepFailed:
        job.say(f"[gemhub] {reference} was not in the image store")
