"""Login names, the runtime record, and the command line that enters an environment."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from gemhub.services.ssh.connection import connection_details
from gemhub.services.ssh.target import (TargetError, Tools, command_argv, process_alive, session_env,
                                        split_login)
from gemhub.spawner.layout import LayoutError
from gemhub.spawner.local import nouserns
from gemhub.spawner.local.runtime import LAUNCHER
from gemhub.spawner.local.record import RuntimeRecord, read_record, record_path, remove_record, write_record

TOOLS = Tools(nsenter="/usr/bin/nsenter", setpriv="/usr/bin/setpriv", env="/usr/bin/env",
              setsid="/usr/bin/setsid")


def record(**kw) -> RuntimeRecord:
    base = dict(pid=4242, unix_user="gem-alice", uid=1001, gid=1001, cwd="/gemini/code", root="/gemini",
                namespace="sandbox", env={"CUDA_VISIBLE_DEVICES": "1", "HOME": "/home/a", "USER": "x"},
                groups=[1001, 2001], ns_pid=4243, ns_mnt="mnt:[4026532000]")
    base.update(kw)
    return RuntimeRecord(**base)


def test_split_login():
    assert split_login("alice") == ("alice", "")
    assert split_login("alice+gpu") == ("alice", "gpu")
    for bad in ("", "+gpu", "alice+", "alice+a/b"):
        with pytest.raises(TargetError):
            split_login(bad)


def launched(argv: list[str]) -> dict:
    """The launcher's spec: it joins the cgroups and loads the no-user-namespaces filter first."""
    assert len(argv) == 5 and argv[:4] == [sys.executable, "-I", "-S", LAUNCHER]
    spec = json.loads(argv[4])
    assert spec["mode"] == "exec" and spec["umask"] == 0o002 and spec["seccomp"] == nouserns.program_hex()
    return spec


def test_sandbox_command_enters_through_init_drops_privileges_then_sets_the_environment():
    env = {"LANGUAGE": "../../../tmp/evil", "HOME": "/home/gem-alice"}
    argv, cwd, spawn_env = command_argv(record(), ["/bin/bash", "-c", "pwd"], env, TOOLS, as_root=True, tty=False)
    assert cwd == "/"
    spec = launched(argv)
    assert spec["cgroup_procs"] == []
    assert spec["argv"] == ["/usr/bin/nsenter", "--target=4243", "--mount", "--pid", "--ipc", "--",
                    "/usr/bin/setpriv", "--reuid=1001", "--regid=1001", "--groups=1001,2001",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
                    "/usr/bin/env", "-i", "--chdir=/gemini/code", "--", "HOME=/home/gem-alice",
                    "LANGUAGE=../../../tmp/evil", "/bin/bash", "-c", "pwd"]
    # the root part runs with a fixed environment: nothing of the client's
    assert spawn_env == {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def test_tty_sessions_get_a_controlling_terminal_and_cgroups_are_joined_first():
    rec = record(cgroup_procs=["/sys/fs/cgroup/memory/gemhub/x/cgroup.procs"])
    argv, _, _ = command_argv(rec, ["/bin/bash", "-l"], {}, TOOLS, as_root=True, tty=True)
    spec = launched(argv)
    assert spec["cgroup_procs"] == ["/sys/fs/cgroup/memory/gemhub/x/cgroup.procs"]
    argv = spec["argv"]
    assert argv[:2] == ["/usr/bin/setsid", "--ctty"]
    assert argv[2] == "/usr/bin/nsenter" and argv[-2:] == ["/bin/bash", "-l"]


def test_fallback_runs_directly_in_the_fallback_root_and_root_is_needed_for_namespaces():
    rec = record(namespace="none", cwd="/srv/state/users/alice/gemini/code")
    assert command_argv(rec, ["/bin/true"], {"A": "1"}, TOOLS, as_root=False, tty=False) == (
        ["/bin/true"], "/srv/state/users/alice/gemini/code", {"A": "1"})
    with pytest.raises(TargetError, match="not running as root"):
        command_argv(record(), ["/bin/true"], {}, TOOLS, as_root=False, tty=False)


def test_session_env_keeps_the_device_binding_and_only_safe_client_variables():
    env = session_env(record(), {"LANG": "C.UTF-8", "LC_ALL": "C", "LD_PRELOAD": "/evil.so", "PATH": "/x"},
                      "xterm-256color", ("10.0.0.5", 50000), ("127.0.0.1", 2222))
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert (env["USER"], env["LOGNAME"], env["HOME"]) == ("gem-alice", "gem-alice", "/home/a")
    assert env["LANG"] == "C.UTF-8" and env["LC_ALL"] == "C" and env["TERM"] == "xterm-256color"
    assert "LD_PRELOAD" not in env and "PATH" not in env
    assert env["SSH_CONNECTION"] == "10.0.0.5 50000 127.0.0.1 2222"


def test_runtime_record_round_trip_is_root_only(tmp_path):
    rec = record(pid=os.getpid(), pid_started=0.0)
    path = write_record(tmp_path, "alice", "", rec)
    assert path == record_path(tmp_path, "alice", "") and path.name == "@default.json"
    assert record_path(tmp_path, "alice", "default") != path  # a server named "default" is another
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_record(tmp_path, "alice", "") == rec
    assert process_alive(rec)
    assert not process_alive(record(pid=os.getpid(), pid_started=1.0))  # a reused pid
    write_record(tmp_path, "alice", "gpu", rec)
    remove_record(tmp_path, "alice", "")
    remove_record(tmp_path, "alice", "")  # idempotent
    assert read_record(tmp_path, "alice", "") is None and read_record(tmp_path, "alice", "gpu") == rec
    assert record_path(tmp_path, "alice", "../x").parent == path.parent  # names are keys, not paths
    with pytest.raises(LayoutError):
        record_path(tmp_path, "../x", "")


def test_connection_details():
    d = connection_details("alice", "gem.example.com", 2222)
    assert d["command"] == "ssh -p 2222 alice@gem.example.com"
    assert "Host gemhub\n    HostName gem.example.com\n    Port 2222\n    User alice\n" == d["ssh_config"]
    named = connection_details("alice", "h", 22, "gpu")
    assert named["command"] == "ssh alice+gpu@h" and named["alias"] == "gemhub-gpu"


def test_untrustworthy_records_are_refused(tmp_path):
    import pwd

    from gemhub.services.ssh.target import check_record

    me = pwd.getpwuid(os.getuid()).pw_name
    ok = record(pid=os.getpid(), unix_user=me, uid=os.getuid(), gid=os.getgid(), namespace="none")
    path = write_record(tmp_path, "alice", "", ok)
    check_record(ok, path)
    path.chmod(0o666)
    with pytest.raises(TargetError, match="not trustworthy"):
        check_record(ok, path)
    path.chmod(0o600)
    # a sandbox record must name a real, non-root account and the server's own sandbox init
    for bad in (record(pid=os.getpid(), unix_user="root", uid=0, gid=0),
                record(pid=os.getpid(), unix_user="nobody", uid=65534, gid=65534)):
        with pytest.raises(TargetError, match="does not match"):
            check_record(bad, path)
