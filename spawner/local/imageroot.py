"""An image version as the root of a local workload's sandbox.

The image service makes every built version a read-only root filesystem at
``gemhub.spawner.layout.image_rootfs_dir`` (root-only on the host; a read-only mount of the
version's buildah container, or a copy with the vfs driver); here it becomes the
sandbox's root (:class:`~.runtime.HostSystem` with the image's top-level entries), its
Python (``/opt/gemhub/venv``, the images' contract) runs ``jupyterhub-singleuser``, and its
ENV is the environment's before the platform's own variables. The folder comes from the
layout and the ids the image service resolved, never from a path in an answer.

Two small files give the account a name inside: the image's ``/etc/passwd`` and
``/etc/group`` plus the account's lines, written root-only under the state directory and
bound read-only over the image's (``whoami``, ``ls -l``, ssh and pip's ``--user`` see it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gemhub.spawner import layout
from gemhub.spawner.local import sandbox
from gemhub.spawner.local.runtime import DEFAULT_PATH, JUPYTER_CONFIG_DIR, HostSystem, Identity
from gemhub.spawner.request import ImageChoice

VENV = "/opt/gemhub/venv"
PYTHON = f"{VENV}/bin/python"
SINGLEUSER = f"{VENV}/bin/jupyterhub-singleuser"
# variables of the image that the platform always sets itself
PLATFORM_VARS = frozenset({"HOME", "USER", "LOGNAME", "SHELL", "JUPYTER_CONFIG_PATH", "PYTHONPATH", "LD_PRELOAD"})


class ImageRootError(RuntimeError):
    """The version's root filesystem is missing or unsafe; the message says why."""


@dataclass(frozen=True)
class ImageRoot:
    host: HostSystem
    command: list[str]  # jupyterhub-singleuser of the image
    env: dict[str, str]  # the image's ENV (PATH included), under the platform's variables
    binds: tuple[sandbox.Bind, ...]  # the platform's files the image cannot have

    @property
    def path(self) -> str:
        return self.env.get("PATH") or f"{VENV}/bin:{DEFAULT_PATH}"


def rootfs(state_dir: str, image: ImageChoice) -> Path:
    return layout.image_rootfs_dir(state_dir, image.workspace_id, image.version_id)


def _checked(folder: Path) -> Path:
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        raise ImageRootError("its root filesystem is not exported yet; try again in a minute") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise ImageRootError("its root filesystem is not a root-owned folder")
    parent = os.lstat(folder.parent)
    if parent.st_uid != 0 or stat.S_IMODE(parent.st_mode) & 0o022:
        raise ImageRootError("its root filesystem's folder is writable by others")
    with os.scandir(folder) as entries:
        if next(entries, None) is None:
            # the mount point of a version whose mount is gone (a reboot): the image service
            # mounts it again when it starts
            raise ImageRootError("its root filesystem is not mounted yet (the image service mounts it when"
                                 " it starts); try again in a minute")
    return folder


def image_env(image: ImageChoice) -> dict[str, str]:
    out = {}
    for item in image.env:
        key, sep, value = item.partition("=")
        if sep and key and key not in PLATFORM_VARS:
            out[key] = value
    return out


def _image_file(folder: Path, name: str) -> str:
    """The image's /etc/<name>, written by a build: neither /etc nor the file may be a link
    (root never follows a path the image chose), and only a regular file is read."""
    etc = os.open(folder / "etc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=etc)
    finally:
        os.close(etc)
    with os.fdopen(fd) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"/etc/{name} of the image is not a regular file")
        return f.read()


def account_files(state_dir: str, unit: str, folder: Path, identity: Identity) -> tuple[sandbox.Bind, ...]:
    """/etc/passwd and /etc/group of the image with the account added (root-only files)."""
    out_dir = Path(state_dir) / "images" / "accounts" / unit
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir.parent, 0o700)
    binds = []
    for name, line in (("passwd", f"{identity.name}:x:{identity.uid}:{identity.gid}::{identity.sandbox_home}:"
                                  "/bin/bash"),
                       ("group", f"{identity.name}:x:{identity.gid}:")):
        try:
            lines = [x for x in _image_file(folder, name).splitlines() if x and not x.startswith(f"{identity.name}:")]
        except OSError:
            lines = []
        target = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text("\n".join(lines + [line]) + "\n")
        os.chmod(tmp, 0o644)
        tmp.replace(target)
        binds.append(sandbox.Bind(str(target), f"/etc/{name}", "ro"))
    return tuple(binds)


def image_root(state_dir: str, image: ImageChoice, bwrap: str) -> ImageRoot:
    """The sandbox's root, command and environment for ``image``."""
    folder = _checked(rootfs(state_dir, image))
    listing = {}
    for entry in os.scandir(folder):
        listing[entry.name] = os.readlink(entry.path) if entry.is_symlink() else None
    if not os.path.exists(folder / SINGLEUSER.lstrip("/")):
        raise ImageRootError(f"it has no {SINGLEUSER} (images build on an official image to get one)")
    host = HostSystem(root_entries=sandbox.image_root_entries(listing), python=(), root=str(folder), bwrap=bwrap)
    env = image_env(image)
    env.setdefault("PATH", f"{VENV}/bin:{DEFAULT_PATH}")
    # the platform's Jupyter settings (server extension, Lab defaults), read-only at the same path
    binds = (sandbox.Bind(JUPYTER_CONFIG_DIR, JUPYTER_CONFIG_DIR, "ro"),)
    return ImageRoot(host=host, command=[PYTHON, SINGLEUSER], env=env, binds=binds)
