"""The sandbox of a local workload, as a bubblewrap command line (pure: no I/O).

bubblewrap (``bwrap``, the sandbox Flatpak builds on) starts from an *empty* root and adds
only what it is told to: anything not listed here does not exist inside. That is the model
we want (ARCHITECTURE.md §2, §6) and the reason we use it instead of carving a private view
out of the host's mount namespace (the previous launcher hid ``/gemini`` only, so the whole
host — the state directory included — stayed visible). It runs as root here without user
namespaces, so the mounts are set up by root and the workload is then dropped to its unix
account with ``setpriv`` (``--uid`` would need a user namespace).

What an environment sees:

- the operating system read-only: the host's ``/usr`` and ``/etc`` (plus the ``/bin`` →
  ``usr/bin`` style links), or an image's root filesystem entry by entry;
- the Python environment it runs (the venv, its base interpreter, GemHub's own sources for
  an editable install), read-only at their own paths;
- ``/gemini``: the project's code and output read-write, dataset/model versions read-only
  (an empty read-only folder in unused slots);
- its home at ``/home/<account>``, a private ``/tmp`` and ``/var/tmp``;
- ``/dev`` with the usual pseudo-devices plus exactly the allotted accelerator nodes;
- a fresh ``/proc`` of its own pid namespace (it sees its own processes only) and its own
  IPC namespace.

The sandbox shares the host's network (the hub and the proxy reach the server on loopback).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GEMINI = "/gemini"
# Top-level entries of a root filesystem that the sandbox makes itself (never bound).
OWN_DIRS = frozenset({"proc", "dev", "tmp", "home", "run", "sys", "gemini", "root", "mnt", "media",
                      "lost+found", "boot", "srv", "var"})
HOST_OS_DIRS = ("usr", "etc")  # the host's operating system, read-only
BIND_KINDS = ("ro", "rw", "dev")


class SandboxError(ValueError):
    """A sandbox description that cannot be built safely; the message says why."""


@dataclass(frozen=True)
class Bind:
    """``source`` (a host path) appears at ``target`` inside: read-only, read-write or a device."""

    source: str
    target: str
    kind: str = "ro"

    def __post_init__(self):
        if self.kind not in BIND_KINDS:
            raise SandboxError(f"bind kind must be one of {', '.join(BIND_KINDS)}, not {self.kind!r}")
        for p in (self.source, self.target):
            if not p.startswith("/") or "/../" in f"{p}/" or "\0" in p:
                raise SandboxError(f"sandbox paths must be absolute and plain, not {p!r}")

    def args(self) -> list[str]:
        flag = {"ro": "--ro-bind", "rw": "--bind", "dev": "--dev-bind"}[self.kind]
        return [flag, self.source, self.target]


@dataclass(frozen=True)
class RootEntry:
    """One top-level entry of the root filesystem: a folder bound read-only, or a symlink."""

    name: str
    link: str | None = None  # the symlink's target (e.g. "usr/bin" for /bin); None: a folder


@dataclass(frozen=True)
class SandboxSpec:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups (numeric: an image's /etc/group knows none)
    home: Bind  # rw, at /home/<account>
    root: str  # the folder whose entries make "/" ("/" for the host OS)
    root_entries: tuple[RootEntry, ...]  # what of ``root`` is visible (see host_root_entries)
    gemini: tuple[Bind, ...] = ()  # /gemini/<slot> binds
    python: tuple[str, ...] = ()  # host folders bound read-only at their own path
    extra: tuple[Bind, ...] = ()  # mirrors' files, the MPS pipe folder, ...
    devices: tuple[Bind, ...] = ()  # allotted device nodes (dev binds under /dev)
    cwd: str = f"{GEMINI}/code"
    tmp_size_bytes: int | None = None
    setpriv: str = "/usr/bin/setpriv"

    def __post_init__(self):
        if self.uid == 0 or self.gid == 0 or 0 in self.groups:
            raise SandboxError("a workload never runs as root or with root's group")
        for b in self.gemini:
            if not b.target.startswith(f"{GEMINI}/") or b.kind == "dev":
                raise SandboxError(f"{b.target!r} is not a /gemini slot")
        for b in self.devices:
            if b.kind != "dev" or not b.target.startswith("/dev/"):
                raise SandboxError(f"{b.target!r} is not a device node under /dev")
        if self.home.kind != "rw" or not self.home.target.startswith("/home/"):
            raise SandboxError("the home folder is bound read-write under /home")


def host_root_entries(links: dict[str, str]) -> tuple[RootEntry, ...]:
    """The host OS as a root: /usr and /etc, plus the host's top-level links into /usr
    (``links``: name -> target of /bin, /lib, /lib64, /sbin, ... where they are symlinks)."""
    out = [RootEntry(d) for d in HOST_OS_DIRS]
    out += [RootEntry(name, target) for name, target in sorted(links.items())
            if name not in OWN_DIRS and name not in HOST_OS_DIRS]
    return tuple(out)


def image_root_entries(listing: dict[str, str | None]) -> tuple[RootEntry, ...]:
    """An image's root filesystem: every top-level folder and link it has, except the ones
    the sandbox makes itself (``listing``: name -> link target, or None for a folder)."""
    return tuple(RootEntry(name, target) for name, target in sorted(listing.items())
                 if name not in OWN_DIRS and "/" not in name and name not in (".", ".."))


def bwrap_argv(spec: SandboxSpec, argv: list[str], bwrap: str = "bwrap") -> list[str]:
    """The full command: bwrap building the sandbox, then setpriv dropping to the account."""
    if not argv:
        raise SandboxError("nothing to run")
    out = [bwrap, "--unshare-pid", "--unshare-ipc", "--new-session"]
    for e in spec.root_entries:
        if e.link is not None:
            out += ["--symlink", e.link, f"/{e.name}"]
        else:
            src = f"{spec.root.rstrip('/')}/{e.name}"
            out += ["--ro-bind", src, f"/{e.name}"]
    out += ["--proc", "/proc", "--dev", "/dev"]
    for b in spec.devices:
        out += b.args()
    # /dev/shm (PyTorch's data loaders, multiprocessing) is private to the sandbox too
    out += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    out += ["--perms", "1777"]
    if spec.tmp_size_bytes:
        out += ["--size", str(spec.tmp_size_bytes)]
    out += ["--tmpfs", "/tmp", "--perms", "1777", "--dir", "/var/tmp"]
    out += ["--dir", "/home", *spec.home.args()]
    made: set[str] = {"/", "/home", "/tmp", "/var", "/var/tmp"}
    for p in spec.python:
        out += _parents(p, made) + Bind(p, p).args()
    for b in spec.extra:
        out += _parents(b.target, made) + b.args()
    out += ["--dir", GEMINI]
    for b in spec.gemini:
        out += b.args()
    out += ["--chdir", spec.cwd, "--"]
    out += [spec.setpriv, f"--reuid={spec.uid}", f"--regid={spec.gid}"]
    out += [f"--groups={','.join(str(g) for g in spec.groups)}"] if spec.groups else ["--clear-groups"]
    # no capabilities, and nothing (setuid binaries, file capabilities) can give any back
    out += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]
    return out


def _parents(path: str, made: set[str]) -> list[str]:
    """``--dir`` for each missing ancestor of ``path`` (bwrap would make them 0700, which the
    account could not traverse)."""
    out: list[str] = []
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if d not in made:
            made.add(d)
            out += ["--perms", "0755", "--dir", d]
    return out


@dataclass(frozen=True)
class DeviceRule:
    """One devices-cgroup rule: a character device ``major:minor`` (``minor`` None = all)."""

    major: int
    minor: int | None = None

    def allow_line(self) -> str:
        return f"c {self.major}:{'*' if self.minor is None else self.minor} rwm"


# What every sandbox may open (Docker's default list): null, zero, full, random, urandom,
# tty, ptmx and the pseudo-terminals; everything else is refused by the devices cgroup.
BASE_DEVICE_RULES = (DeviceRule(1, 3), DeviceRule(1, 5), DeviceRule(1, 7), DeviceRule(1, 8), DeviceRule(1, 9),
                     DeviceRule(5, 0), DeviceRule(5, 2), DeviceRule(136))


@dataclass(frozen=True)
class Allotment:
    """The device nodes a workload gets: binds into its /dev and the cgroup rules for them."""

    binds: tuple[Bind, ...] = ()
    rules: tuple[DeviceRule, ...] = field(default_factory=tuple)

    def cgroup_rules(self) -> tuple[DeviceRule, ...]:
        return BASE_DEVICE_RULES + self.rules
