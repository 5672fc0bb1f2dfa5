"""Where the image service keeps its things under the state directory, and buildah's
command lines (pure: paths and argv, no process is started here).

``<state>/images/`` is root-only (0700): buildah's storage (``storage/``, ``run/``), build
logs, build contexts, scratch space, and the exported root filesystems of official
images. A workspace's own image versions are exported under
``<state>/workspaces/<ws>/images/`` (also 0700), where the data service's scan counts them
in the workspace's ``images`` storage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gemhub.spawner import layout

# buildah's reference of a version in local storage; ids keep it injective
LOCAL_PREFIX = "localhost/gemhub"
# the Debian root every official image starts from (debootstrap, imported by bootstrap.py)
DEBIAN_ROOT = f"{LOCAL_PREFIX}/debian:bookworm"


def local_reference(image_id: int, number: int) -> str:
    return f"{LOCAL_PREFIX}/img-{int(image_id)}:v{int(number)}"


def registry_reference(registry: str, image_id: int, number: int) -> str:
    """Where a version is pushed for the Kubernetes runtime (``images.registry``)."""
    return f"{registry.rstrip('/')}/gemhub/img-{int(image_id)}:v{int(number)}"


@dataclass(frozen=True)
class Store:
    """The image service's folders and buildah's global options."""

    state_dir: str
    driver: str = "vfs"

    @property
    def root(self) -> Path:
        return Path(self.state_dir) / "images"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def runroot(self) -> Path:
        return self.root / "run"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def log(self, version_id: int) -> Path:
        return self.root / "logs" / f"{int(version_id)}.log"

    def context(self, version_id: int) -> Path:
        return self.root / "contexts" / str(int(version_id))

    def dockerfile(self, version_id: int) -> Path:
        return self.root / "contexts" / f"{int(version_id)}.Containerfile"

    def rootfs(self, workspace_id: int | None, version_id: int) -> Path:
        return layout.image_rootfs_dir(self.state_dir, workspace_id, version_id)

    def prepare(self) -> None:
        """Create the folders, root-only."""
        for d in (self.root, self.storage, self.runroot, self.tmp, self.root / "logs", self.root / "contexts",
                  self.root / "rootfs"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def env(self) -> dict[str, str]:
        """buildah's environment: chroot isolation, scratch space inside the store."""
        return {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.root),
            "TMPDIR": str(self.tmp),
            "BUILDAH_ISOLATION": "chroot",
            "LANG": "C.UTF-8",
        }

    def buildah(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.storage), "--runroot", str(self.runroot),
                "--storage-driver", self.driver, *args]


# Capabilities a RUN step keeps (buildah's default set minus SYS_CHROOT, KILL, NET_RAW,
# MKNOD and AUDIT_WRITE): enough for apt (setuid/setgid to _apt) and pip, too little to
# leave the chroot, signal other processes or make device nodes.
DROPPED_CAPS = ("CAP_SYS_CHROOT", "CAP_KILL", "CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP")


def bud_argv(store: Store, dockerfile: str | os.PathLike, context: str | os.PathLike, reference: str,
             labels: dict[str, str] | None = None, build_args: dict[str, str] | None = None) -> list[str]:
    """``buildah bud`` of one version: chroot isolation, never pulls, cached layers."""
    argv = store.buildah(
        "bud", "--isolation", "chroot", "--pull=never", "--layers", "--format", "oci",
        *[a for cap in DROPPED_CAPS for a in ("--cap-drop", cap)],
        "-f", str(dockerfile), "-t", reference,
    )
    for key, value in sorted((labels or {}).items()):
        argv += ["--label", f"{key}={value}"]
    for key, value in sorted((build_args or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    return argv + [str(context)]


def sandboxed(store: Store, argv: list[str], binds: list[str | os.PathLike] = (),
              ro_binds: list[str | os.PathLike] = ()) -> list[str]:
    """``argv`` (a build) inside bubblewrap: /tmp and the state directory replaced by empty
    tmpfs with only buildah's storage and this build's own folders bound back, a private
    pid namespace (a RUN can signal only the build's processes), dying with the service. buildah itself keeps root's capabilities to mount layers; RUN steps run in
    its chroot with DROPPED_CAPS removed."""
    state = os.path.abspath(store.state_dir)
    out = ["bwrap", "--dev-bind", "/", "/", "--tmpfs", "/tmp", "--tmpfs", state]
    for path in (store.storage, store.runroot, store.tmp, *binds):
        out += ["--bind", str(path), str(path)]
    for path in ro_binds:
        out += ["--ro-bind", str(path), str(path)]
    # --as-pid-1: buildah (all capabilities) is pid 1, so a RUN step (fewer capabilities)
    # cannot open /proc/1/root; bubblewrap's own init would have none and let it.
    out += ["--unshare-pid", "--unshare-ipc", "--proc", "/proc", "--die-with-parent", "--as-pid-1",
            "--cap-add", "ALL", "--"]
    return out + list(argv)
