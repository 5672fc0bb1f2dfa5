"""Run a command in a private mount namespace laid out like a container's: ``python
mountns.py SPEC.json -- ARGV...`` (as root).

SPEC: ``{"mounts": [{"source", "target", "readonly"}], "hosts": FILE, "cwd": DIR}``. Each
source is bound at its target; a target whose folders do not exist on this machine gets a
tmpfs on its nearest existing ancestor first (so /usr/local/etc/jupyterhub or /srv/gemhub
appear without touching the host). ``hosts`` replaces /etc/hosts: the cluster's DNS names
(Services) resolve to this network namespace's loopback. Sources are opened before anything
is mounted, so a mount over /tmp cannot hide a source that lives under /tmp.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
O_PATH = getattr(os, "O_PATH", 0o10000000)
# Never covered with a tmpfs: the process needs what is in them.
KEEP = {"/", "/etc", "/usr", "/usr/local", "/var", "/home", "/root", "/tmp", "/proc", "/dev", "/sys", "/run"}

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source} on {target}")


def tmpfs_roots(targets: list[str]) -> list[str]:
    roots = set()
    for target in targets:
        path = Path(target)
        if path.exists():
            continue
        ancestor = path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if str(ancestor) in KEEP:
            raise SystemExit(f"mountns: {target} would need a tmpfs over {ancestor}")
        roots.add(str(ancestor))
    return sorted(roots)


def main() -> None:
    spec_file, sep, *argv = sys.argv[1:]
    assert sep == "--" and argv, "usage: mountns.py SPEC -- ARGV..."
    spec = json.loads(Path(spec_file).read_text())
    mounts = sorted(spec.get("mounts", []), key=lambda m: m["target"].rstrip("/").count("/"))
    if spec.get("hosts"):
        mounts.append({"source": spec["hosts"], "target": "/etc/hosts", "readonly": True})
    _check(libc.unshare(CLONE_NEWNS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # opened in the new namespace (a bind's source must be in it), before anything is mounted
    fds = [os.open(m["source"], O_PATH) for m in mounts]
    for root in tmpfs_roots([m["target"] for m in mounts]):
        mount("tmpfs", root, "tmpfs", 0, "mode=755")
    for m, fd in zip(mounts, fds):
        target = Path(m["target"])
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        mount(f"/proc/self/fd/{fd}", str(target), None, MS_BIND)
        if m.get("readonly"):
            mount(None, str(target), None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    cwd = spec.get("cwd")
    if cwd:  # else the caller's working directory
        os.chdir(cwd if os.path.isdir(cwd) else "/")
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
