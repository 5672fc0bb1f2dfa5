"""The sandbox's seccomp filter, loaded by the launcher as it is for a server or an SSH
session: no user namespace by any of the three calls; everything else runs as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gemhub.spawner.local import nouserns
from gemhub.spawner.local.runtime import LAUNCHER

PROBE = r"""
import ctypes, errno, json, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
def call(*args):
    r = libc.syscall(*args)
    return [r, errno.errorcode.get(ctypes.get_errno()) if r < 0 else ""]
out = {"unshare": call(272, 0x10000000), "clone3": call(435, None, 0)}
r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD)
if r == 0:
    os._exit(0)
out["clone"] = [r, errno.errorcode.get(ctypes.get_errno()) if r < 0 else ""]
t = threading.Thread(target=lambda: None); t.start(); t.join()
out["child"] = subprocess.run([sys.executable, "-c", "print(7)"], capture_output=True, text=True).stdout.strip()
out["umask"] = os.umask(0)
print(json.dumps(out))
""".replace("sys.executable", repr(sys.executable))


def launch(spec: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", LAUNCHER, json.dumps(spec)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe's syscall numbers are x86_64's")
def test_the_filter_refuses_new_user_namespaces_and_nothing_else():
    r = launch({"mode": "exec", "umask": 0o027, "seccomp": nouserns.program_hex(),
                "argv": [sys.executable, "-c", PROBE]})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["unshare"] == [-1, "EPERM"] and out["clone"] == [-1, "EPERM"]
    assert out["clone3"] == [-1, "ENOSYS"]  # its flags are out of the filter's sight
    assert out["child"] == "7" and out["umask"] == 0o027


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe's syscall numbers are x86_64's")
def test_without_the_filter_the_same_probe_gets_further():
    """The probe is not vacuous: unfiltered, clone3 is no ENOSYS (it fails on its bad argument)."""
    r = launch({"mode": "exec", "argv": [sys.executable, "-c", PROBE]})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["clone3"] != [-1, "ENOSYS"]


def test_a_broken_program_stops_the_launch_with_a_reason():
    r = launch({"mode": "exec", "seccomp": "00" * 7, "argv": ["/bin/true"]})
    assert r.returncode == 1 and "not a whole number of BPF instructions" in r.stderr
    r = launch({"mode": "nonsense", "argv": ["/bin/true"]})
    assert r.returncode == 1 and "unknown mode" in r.stderr
