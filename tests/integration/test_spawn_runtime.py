"""The local runtime without a hub: launcher, mount namespace, unix account, cgroup, stop."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from gemhub.spawner import layout
from gemhub.spawner.local import accounts, cgroups, names, runtime
from gemhub.spawner.local.host import host_system
from gemhub.spawner.presets import Preset
from gemhub.spawner.request import Ref, WorkloadRequest

pytestmark = [pytest.mark.integration, pytest.mark.root]

if os.geteuid() != 0:
    pytest.skip("needs root (unix accounts, mount namespaces, cgroups)", allow_module_level=True)

CHECK = r"""
import os, sys, json
out = {"cwd": os.getcwd(), "uid": os.getuid(), "groups": os.getgroups(), "umask": os.umask(0o002),
       "env": {k: os.environ.get(k) for k in ("MEM_LIMIT", "CPU_LIMIT", "GEMHUB_WORKSPACE", "GEMHUB_PROJECT", "GEMHUB_PRESET", "HOME", "USER")}}
open("/gemini/code/hello.txt", "w").write("hi")
open("/gemini/output/out.txt", "w").write("out")
errs = {}
for slot in ("data-1", "data-2", "data-3", "pretrain1", "pretrain2", "pretrain3"):
    try:
        open(f"/gemini/{slot}/x", "w")
        errs[slot] = "written"
    except OSError as e:
        errs[slot] = e.strerror
try:
    open("/gemini/new", "w")
    errs["root"] = "written"
except OSError as e:
    errs["root"] = e.strerror
out["errs"] = errs
out["cgroup"] = open("/proc/self/cgroup").read()
print(json.dumps(out), flush=True)
if len(sys.argv) > 1:
    import subprocess, time
    subprocess.Popen(["sleep", "300"], start_new_session=True)
    time.sleep(300)
"""


@pytest.fixture
def state():
    d = Path(tempfile.mkdtemp(prefix="gemhub-rt-"))
    d.chmod(0o755)
    for sub in ("users", "workspaces", "readonly/empty", "logs"):
        (d / sub).mkdir(parents=True)
    (d / "readonly" / "empty").chmod(0o555)
    yield d
    subprocess.run(["rm", "-rf", str(d)])


@pytest.fixture
def unix_user():
    hub_user = f"t{uuid.uuid4().hex[:8]}"
    name = names.unix_name(hub_user, "gem-t")
    yield hub_user, name
    for p in psutil.process_iter(["username"]):
        if p.info["username"] == name:
            p.kill()
    accounts.remove_empty_groups(accounts.remove_user(name))
    subprocess.run(["groupdel", name], capture_output=True)


def user_processes(name: str) -> list[psutil.Process]:
    """Live processes of a unix user (zombies hold nothing and wait for init to reap them)."""
    return [p for p in psutil.process_iter(["username", "status"])
            if p.info["username"] == name and p.info["status"] != psutil.STATUS_ZOMBIE]


def _request(user: str, ws: int) -> WorkloadRequest:
    return WorkloadRequest(user=user, workspace=Ref(ws, "w"), project=Ref(1, "default"),
                           preset=Preset("B1", "B1", 0.5, 256 * 1024**2))


async def _prepare(state: Path, hub_user: str, name: str, ws: int) -> tuple[int, runtime.Identity]:
    acc = accounts.Accounts()
    account = await acc.ensure_user(name, layout.user_home(state, hub_user))
    gid = await acc.ensure_member(names.workspace_group(ws), name)
    code, output = layout.project_dirs(state, ws, 1)
    accounts.share_dirs([code, output], gid)
    return gid, runtime.Identity(name, account.uid, account.gid, (account.gid, gid), account.home)


def _plan(state, hub_user, ws, identity, command, cg):
    return runtime.plan_launch(
        _request(hub_user, ws), state_dir=str(state), identity=identity, host=host_system(sys.executable),
        command=command, base_env={}, cgroup_procs=cg.procs_files, python=sys.executable)


def test_launch_in_namespace_as_user(state, unix_user):
    hub_user, name = unix_user
    ws = 900000 + int(uuid.uuid4().int % 99999)
    gid, identity = asyncio.run(_prepare(state, hub_user, name, ws))
    cg = cgroups.plan("auto", names.unit_name(name))
    assert cg is not None, "this machine has writable v1 cgroups"
    cg.create(cgroups.Limits(memory=256 * 1024**2, cpu=0.5, pids=256))
    try:
        plan = _plan(state, hub_user, ws, identity, [sys.executable, "-c", CHECK], cg)
        r = subprocess.run(plan.argv, env=plan.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        import json

        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["cwd"] == "/gemini/code"
        assert out["uid"] == pwd.getpwnam(name).pw_uid
        assert gid in out["groups"]
        assert out["umask"] == 0o002
        assert out["env"]["MEM_LIMIT"] == str(256 * 1024**2)
        assert out["env"]["CPU_LIMIT"] == "0.5"
        assert out["env"]["GEMHUB_WORKSPACE"] == "w"
        assert out["env"]["USER"] == name
        slots = {k: v for k, v in out["errs"].items() if k != "root"}
        assert set(slots.values()) == {"Read-only file system"}, out["errs"]
        assert out["errs"]["root"] == "Permission denied"  # /gemini itself belongs to root
        assert f"memory:/gemhub/{names.unit_name(name)}" in out["cgroup"]
        code, output = layout.project_dirs(state, ws, 1)
        assert (code / "hello.txt").read_text() == "hi"
        assert (output / "out.txt").stat().st_uid == pwd.getpwnam(name).pw_uid
        assert (code / "hello.txt").stat().st_gid == gid  # setgid dir: shared with the workspace
        mem = Path(cg.paths[0]) / "memory.limit_in_bytes"
        assert int(mem.read_text()) == 256 * 1024**2
        # nothing leaked into the host's mount table
        assert "/gemini/code" not in Path("/proc/self/mountinfo").read_text()
    finally:
        cg.kill()
        cg.remove()
    assert not os.path.exists(cg.paths[0])


def test_cgroup_kill_leaves_nothing(state, unix_user):
    hub_user, name = unix_user
    ws = 900000 + int(uuid.uuid4().int % 99999)
    _gid, identity = asyncio.run(_prepare(state, hub_user, name, ws))
    cg = cgroups.plan("required", names.unit_name(name))
    cg.create(cgroups.Limits(memory=256 * 1024**2, cpu=1, pids=256))
    plan = _plan(state, hub_user, ws, identity, [sys.executable, "-c", CHECK, "linger"], cg)
    proc = subprocess.Popen(plan.argv, env=plan.env, stdout=subprocess.PIPE, start_new_session=True)
    try:
        proc.stdout.readline()
        deadline = time.monotonic() + 10
        while len(cg.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(cg.pids()) >= 2  # the server and its detached child (own session)
        cg.kill()
        proc.wait(5)
        assert not user_processes(name)
    finally:
        cg.kill()
        cg.remove()
        proc.stdout.close()


def test_fallback_layout(state, tmp_path):
    request = _request("someone", 3)
    code, output = layout.project_dirs(state, 3, 1)
    code.mkdir(parents=True)
    output.mkdir(parents=True)
    plan = runtime.plan_launch(
        request, state_dir=str(state), identity=None, host=None, command=[sys.executable, "-c",
        "import os; print(os.getcwd()); open('x','w').write('1')"],
        base_env={"HOME": str(tmp_path)}, python=sys.executable,
    )
    r = subprocess.run(plan.argv, env=plan.env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    root = layout.user_gemini_root(state, "someone")
    assert os.path.realpath(root / "code") == str(code)
    assert (code / "x").read_text() == "1"
    assert oct((root / "data-1").stat().st_mode & 0o777) == "0o555"
