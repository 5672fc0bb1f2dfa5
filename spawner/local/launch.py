"""Launcher of a local workload: ``python -m gemhub.spawner.local.launch SPEC_JSON``.

Runs as the first process of a workload and execs the workload's command; it imports only
the standard library so it starts fast. Two modes:

``namespace`` (hub runs as root): join the cgroup, make a private mount namespace
(like ``unshare --mount --propagation private``), mount a tmpfs on /gemini, bind the
project's code/output read-write and the read-only slots read-only, drop to the user's
unix account (initgroups/setgid/setuid), umask 002, chdir /gemini/code, exec.

``fallback`` (hub not root): same user; the root is a plain directory with code/output
symlinked to the project directories and empty read-only slots (mode 555).
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18


class LaunchError(RuntimeError):
    pass


_libc = None


def _call(fn: str, *args) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if getattr(_libc, fn)(*args) != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"{fn}{tuple(a.decode() if isinstance(a, bytes) else a for a in args)}: "
                          f"{os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _call("mount", _b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))


def _check_name(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise LaunchError(f"bad mount name {name!r}")
    return name


def join_cgroup(procs_files: list[str]) -> None:
    pid = str(os.getpid())
    for f in procs_files:
        with open(f, "w") as fh:
            fh.write(pid)


def setup_namespace(root: str, mounts: list[dict]) -> None:
    if not os.path.isdir(root):
        os.makedirs(root, mode=0o755, exist_ok=True)  # on the host, once
    _call("unshare", CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("gemini", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k")
    for m in mounts:
        target = os.path.join(root, _check_name(m["name"]))
        os.mkdir(target, 0o755)
        mount(m["source"], target, None, MS_BIND | MS_REC)
        if m["readonly"]:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=755")


def setup_fallback(root: str, mounts: list[dict], empty: str) -> None:
    os.makedirs(root, exist_ok=True)
    for m in mounts:
        target = os.path.join(root, _check_name(m["name"]))
        if m["readonly"] and os.path.realpath(m["source"]) == os.path.realpath(empty):
            if os.path.islink(target):
                os.unlink(target)
            os.makedirs(target, exist_ok=True)
            os.chmod(target, 0o555)
            continue
        if os.path.islink(target):
            if os.readlink(target) == m["source"]:
                continue
            os.unlink(target)
        elif os.path.isdir(target):
            os.chmod(target, 0o755)
            os.rmdir(target)
        os.symlink(m["source"], target)


def drop_privileges(user: str) -> None:
    pw = pwd.getpwnam(user)
    os.initgroups(user, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def run(spec: dict) -> None:
    """Prepare the workload's process from ``spec`` and exec its command (never returns)."""
    if spec.get("cgroup_procs"):
        join_cgroup(spec["cgroup_procs"])
    if spec["mode"] == "namespace":
        setup_namespace(spec["root"], spec["mounts"])
        drop_privileges(spec["user"])
    elif spec["mode"] == "fallback":
        setup_fallback(spec["root"], spec["mounts"], spec.get("empty", ""))
    else:
        raise LaunchError(f"unknown mode {spec['mode']!r}")
    os.umask(spec.get("umask", 0o002))
    os.chdir(spec["cwd"])
    argv = spec["argv"]
    os.execv(argv[0], argv)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gemhub.spawner.local.launch SPEC_JSON")
    try:
        run(json.loads(sys.argv[1]))
    except (LaunchError, OSError, KeyError) as e:
        sys.stderr.write(f"gemhub launch failed: {e}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
