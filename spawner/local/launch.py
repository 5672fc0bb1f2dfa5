"""Launcher of a local workload: ``python -m gemhub.spawner.local.launch SPEC_JSON``.

Runs as the first process of a workload and execs the workload's command; it imports only
the standard library so it starts fast. It first joins the workload's cgroups (so every
process that follows is counted and can be killed together), sets the umask, then:

``sandbox`` (hub runs as root): execs bubblewrap, which builds the sandbox and drops to the
account with setpriv (the whole command line comes from :mod:`.runtime`/:mod:`.sandbox`);

``fallback`` (hub not root): same user; the root is a plain directory with code/output
symlinked to the project directories and empty read-only slots (mode 555);

``exec`` (the SSH gateway's way into a running sandbox): just the steps below, then the command.

With ``seccomp`` (hex of a compiled BPF program, :mod:`.nouserns`) the program is loaded last,
so that the sandbox's builder and everything it starts run under it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class LaunchError(RuntimeError):
    pass


def _check_name(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise LaunchError(f"bad mount name {name!r}")
    return name


def join_cgroup(procs_files: list[str]) -> None:
    pid = str(os.getpid())
    for f in procs_files:
        with open(f, "w") as fh:
            fh.write(pid)


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


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program: bytes) -> None:
    """Load a seccomp filter on this process (inherited by everything it execs and forks).
    Root needs no no_new_privs for it; the account's setpriv sets that later anyway."""
    if not program or len(program) % 8:
        raise LaunchError("the seccomp program is not a whole number of BPF instructions")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise LaunchError(f"loading the seccomp filter failed: {os.strerror(ctypes.get_errno())}")


def run(spec: dict) -> None:
    """Prepare the workload's process from ``spec`` and exec its command (never returns)."""
    if spec.get("cgroup_procs"):
        join_cgroup(spec["cgroup_procs"])
    os.umask(spec.get("umask", 0o002))
    if spec["mode"] == "sandbox":
        os.chdir("/")
    elif spec["mode"] == "fallback":
        setup_fallback(spec["root"], spec["mounts"], spec.get("empty", ""))
        os.chdir(spec["cwd"])
    elif spec["mode"] != "exec":
        raise LaunchError(f"unknown mode {spec['mode']!r}")
    if spec.get("seccomp"):
        load_seccomp(bytes.fromhex(spec["seccomp"]))
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
