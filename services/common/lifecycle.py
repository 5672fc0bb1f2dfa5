"""How a process the hub starts for GemHub lives and dies (the services, the idle culler).

- **It dies with the hub**: :func:`die_with_parent` asks Linux to send it SIGTERM when
  its parent (the hub) exits, ``kill -9`` included, so a crashed hub leaves none behind.
- **It runs once**: :func:`claim` takes an exclusive lock on ``<state>/run/<name>.lock``
  for the process's lifetime. A predecessor still holding it (one shutting down after a hub
  crash, or left by an older release without the above) is stopped first, so a restarted
  hub never runs two of anything.
- **A failed start says why in one line**: :class:`StartFailure` carries it;
  :func:`report_failure` writes it to ``<state>/run/<name>.failed``, which ``make run``
  prints (and deletes before each start).

The single-user servers are not among these: they outlive the hub on purpose (the next hub
finds them again), and so does the proxy, as JupyterHub designs it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

import psutil

PR_SET_PDEATHSIG = 1
RUN_DIR = "run"


class StartFailure(RuntimeError):
    """The process cannot start; the message is one line for a person ("port 2222 is in use")."""


def run_dir(state_dir: str | os.PathLike) -> Path:
    """``<state>/run``: locks and failure notes of the hub's processes (root only)."""
    path = Path(state_dir) / RUN_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent (the hub) dies; False where
    that is not possible. (A hub that died before this was asked leaves the process behind;
    the next hub's :func:`claim` stops it.)"""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except OSError:
        return False


class Claim:
    """The lock file held (open) for the process's lifetime; closing it releases the claim."""

    def __init__(self, fd: int, path: Path):
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _holder(fd: int) -> int:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return int(os.read(fd, 32).decode().strip() or 0)
    except ValueError:
        return 0


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _is_running(pid: int, marker: str) -> psutil.Process | None:
    """The process ``pid`` if it is alive and its command line contains ``marker`` (so a pid
    reused by an unrelated program is never signalled)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or marker not in " ".join(proc.cmdline()):
            return None
        return proc
    except psutil.Error:
        return None


def claim(state_dir: str | os.PathLike, name: str, marker: str, stop_wait: float = 10.0) -> Claim:
    """Become the one running ``name``. A running predecessor (its command line contains
    ``marker``) gets SIGTERM, then SIGKILL after ``stop_wait`` seconds."""
    path = run_dir(state_dir) / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if not _try_lock(fd):
        pid = _holder(fd)
        proc = _is_running(pid, marker) if pid and pid != os.getpid() else None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_wait
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                if proc is not None and proc.is_running():
                    proc.kill()
                    proc = None
                    deadline = time.monotonic() + stop_wait
                    continue
                os.close(fd)
                raise StartFailure(f"another {name} (pid {pid or 'unknown'}) holds {path} and does not stop")
            time.sleep(0.1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return Claim(fd, path)


def is_claimed(state_dir: str | os.PathLike, name: str) -> bool:
    """Whether a process holds ``name``'s claim now (a look; nothing is taken)."""
    path = Path(state_dir) / RUN_DIR / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if _try_lock(fd):
            return False
        return True
    finally:
        os.close(fd)  # also drops the lock just taken


def claimed_names(state_dir: str | os.PathLike) -> list[str]:
    """Names whose claim is held now."""
    folder = Path(state_dir) / RUN_DIR
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.lock") if is_claimed(state_dir, p.stem))


def report_failure(state_dir: str | os.PathLike, name: str, reason: str) -> None:
    """Leave the one-line reason of a failed start for ``make run`` to print (best effort:
    a state directory that cannot be written must not hide the reason from the log)."""
    try:
        path = run_dir(state_dir) / f"{name}.failed"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(reason.strip().splitlines()[0] if reason.strip() else "failed to start")
        f.write("\n")


def failures(state_dir: str | os.PathLike) -> dict[str, str]:
    """{name: reason} of the failed starts reported since :func:`clear_failures`."""
    folder = Path(state_dir) / RUN_DIR
    out = {}
    for p in sorted(folder.glob("*.failed")) if folder.is_dir() else []:
        try:
            out[p.stem] = p.read_text().strip()
        except OSError:
            continue
    return out


def clear_failures(state_dir: str | os.PathLike) -> None:
    folder = Path(state_dir) / RUN_DIR
    for p in folder.glob("*.failed") if folder.is_dir() else []:
        p.unlink(missing_ok=True)


def describe_bind_error(error: OSError, host: str, port: int) -> str:
    """A bind error as a person reads it."""
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use"
    if error.errno == errno.EACCES:
        return f"no permission to listen on port {port}"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no such address on this machine"
    return f"cannot listen on {host}:{port}: {error.strerror or error}"
