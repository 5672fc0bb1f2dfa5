"""The seccomp filter every sandboxed process runs under: it cannot create user namespaces.

Inside a user namespace of its own an account holds every capability over what that
namespace owns (mounts, network and PID namespaces of its making), which is kernel attack
surface a notebook never needs; no_new_privs and the empty capability sets do not prevent it.
The filter refuses ``unshare``/``clone`` with CLONE_NEWUSER (EPERM, as a kernel without user
namespaces would) and answers ``clone3`` with ENOSYS: a filter cannot read clone3's flags
(they are behind a pointer), and glibc, Go and the rest fall back to ``clone`` on ENOSYS, as
Docker's default profile relies on. Syscalls of another ABI (32-bit ``int 0x80``) kill the
process, since they would bypass the rules (libseccomp's bad-architecture action).

libseccomp (Debian's libseccomp2, which apt itself needs) compiles the rules; the launcher
(:mod:`.launch`, standard library only) loads the compiled program before it execs.
"""

from __future__ import annotations

import errno
import functools
import tempfile

CLONE_NEWUSER = 0x10000000


class FilterUnavailable(RuntimeError):
    """libseccomp cannot be loaded; the message says what to install."""


@functools.lru_cache(maxsize=1)
def program_hex() -> str:
    """The compiled BPF program for this machine's architecture, as hex (it travels in the
    launcher's JSON spec)."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as e:  # OSError: libseccomp.so.2 is missing
        raise FilterUnavailable(f"libseccomp cannot be loaded ({e}); apt-get install libseccomp2") from None
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    new_user = seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    f.add_rule(seccomp.ERRNO(errno.EPERM), "unshare", new_user)
    f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", new_user)
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read().hex()
