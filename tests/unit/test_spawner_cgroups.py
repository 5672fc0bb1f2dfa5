import os

import pytest

from gemhub.spawner.local import cgroups
from gemhub.spawner.local.accounts import unix_name, workspace_group

L = cgroups.Limits(memory=2 * 1024**3, cpu=1.5, pids=100)


def test_paths_v1_and_v2():
    assert cgroups.paths("v1", "gem-a", "/cg") == ["/cg/memory/gemhub/gem-a", "/cg/cpu/gemhub/gem-a",
                                                   "/cg/pids/gemhub/gem-a"]
    assert cgroups.paths("v2", "gem-a", "/cg") == ["/cg/gemhub/gem-a"]
    with pytest.raises(ValueError):
        cgroups.paths("v3", "x")


def test_limit_files_v1():
    files = dict(cgroups.limit_files("v1", cgroups.paths("v1", "u", "/cg"), L))
    assert files == {
        "/cg/memory/gemhub/u/memory.limit_in_bytes": str(2 * 1024**3),
        "/cg/cpu/gemhub/u/cpu.cfs_period_us": "100000",
        "/cg/cpu/gemhub/u/cpu.cfs_quota_us": "150000",
        "/cg/pids/gemhub/u/pids.max": "100",
    }


def test_limit_files_v2():
    files = dict(cgroups.limit_files("v2", ["/cg/gemhub/u"], L))
    assert files["/cg/gemhub/u/memory.max"] == str(2 * 1024**3)
    assert files["/cg/gemhub/u/cpu.max"] == "150000 100000"
    assert files["/cg/gemhub/u/pids.max"] == "100"


def test_unit_name():
    assert cgroups.unit_name("gem-a") == "gem-a"
    assert cgroups.unit_name("gem-a", "gpu/1") == "gem-a-gpu_1"


def _fake_v1(root):
    for c in cgroups.V1_CONTROLLERS:
        os.makedirs(root / c)


def test_detect_and_plan(tmp_path):
    assert cgroups.detect(str(tmp_path)) is None
    assert cgroups.plan("auto", "u", str(tmp_path), is_root=True) is None
    with pytest.raises(cgroups.CgroupError, match="required"):
        cgroups.plan("required", "u", str(tmp_path), is_root=True)
    assert cgroups.plan("off", "u", str(tmp_path), is_root=True) is None
    _fake_v1(tmp_path)
    assert cgroups.detect(str(tmp_path)) == "v1"
    assert cgroups.plan("auto", "u", str(tmp_path), is_root=False) is None
    cg = cgroups.plan("auto", "u", str(tmp_path), is_root=True)
    assert cg.version == "v1"
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert cgroups.detect(str(tmp_path)) == "v2"
    (tmp_path / "cgroup.controllers").write_text("")  # v2 without controllers (this machine)
    assert cgroups.detect(str(tmp_path)) == "v1"
    with pytest.raises(cgroups.CgroupError):
        cgroups.plan("sometimes", "u", str(tmp_path))


def test_create_state_roundtrip_and_remove(tmp_path):
    _fake_v1(tmp_path)
    cg = cgroups.plan("required", "u", str(tmp_path), is_root=True).create(L)
    assert (tmp_path / "cpu/gemhub/u/cpu.cfs_quota_us").read_text() == "150000"
    again = cgroups.Cgroup.from_state(cg.to_state())
    assert again == cg and again.pids() == set()
    assert cgroups.Cgroup.from_state({}) is None


def test_unix_names():
    assert unix_name("alice") == "gem-alice"
    assert unix_name("alice", "gem-t") == "gem-talice"
    bob, Bob = unix_name("bob"), unix_name("Bob")
    assert bob != Bob and Bob.startswith("gem-bob-")
    long = unix_name("x" * 100)
    assert len(long) <= 32 and long.startswith("gem-x")
    assert unix_name("名字").startswith("gem-")
    assert unix_name("a.b@c") != unix_name("a-b-c")
    assert workspace_group(7) == "gemws-7"


def test_parent_cpu_weight_scales_with_servers():
    assert cgroups.parent_cpu_weight("v1", 0) == ("cpu.shares", "1024")
    assert cgroups.parent_cpu_weight("v1", 10) == ("cpu.shares", "10240")
    assert cgroups.parent_cpu_weight("v1", 10**6) == ("cpu.shares", "262144")
    assert cgroups.parent_cpu_weight("v2", 3) == ("cpu.weight", "300")
    assert cgroups.parent_cpu_weight("v2", 500) == ("cpu.weight", "10000")


def test_create_and_remove_rebalance_the_parent(tmp_path):
    _fake_v1(tmp_path)
    a = cgroups.plan("required", "a", str(tmp_path), is_root=True).create(L)
    b = cgroups.plan("required", "b", str(tmp_path), is_root=True).create(L)
    shares = tmp_path / "cpu" / "gemhub" / "cpu.shares"
    assert shares.read_text() == "2048"
    import shutil

    for d in b.paths:  # what rmdir does on a real cgroup filesystem
        shutil.rmtree(d)
    b.remove()
    assert shares.read_text() == "1024"
