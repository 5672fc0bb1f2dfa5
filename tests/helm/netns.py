"""A private network namespace for the calling thread: a cluster's worth of fixed ports
(hub 8081, proxy 8000/8001, the services' ports) without meeting anything else on this
shared machine. Threads and processes started from the thread while inside inherit it."""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


@contextmanager
def private_network():
    """``with private_network():`` — this thread in a new network namespace with only an
    up loopback; back in the original one afterwards."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            _loopback_up()
            yield
        finally:
            _check(libc.setns(original, CLONE_NEWNET), "setns back")
    finally:
        os.close(original)
