import os

import pytest

from gemhub.spawner.local import cgroups

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


def test_devices_rules_are_written_deny_first(tmp_path):
    paths = cgroups.paths("v1", "u", "/cg", devices=True)
    limits = cgroups.Limits(memory=1, cpu=1.0, devices=("c 1:3 rwm", "c 120:0 rwm"))
    files = cgroups.limit_files("v1", paths, limits)
    dev = [(f, v) for f, v in files if "/devices/" in f]
    assert dev == [("/cg/devices/gemhub/u/devices.deny", "a"), ("/cg/devices/gemhub/u/devices.allow", "c 1:3 rwm"),
                   ("/cg/devices/gemhub/u/devices.allow", "c 120:0 rwm")]
    with pytest.raises(cgroups.CgroupError):
        cgroups.paths("v1", "../x", "/cg")


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


def test_parent_cpu_weight_is_two_processes_per_cpu():
    assert cgroups.parent_cpu_weight("v1", 2) == ("cpu.shares", "4096")
    assert cgroups.parent_cpu_weight("v1", 10**6) == ("cpu.shares", "262144")
    assert cgroups.parent_cpu_weight("v2", 3) == ("cpu.weight", "600")
    assert cgroups.parent_cpu_weight("v2", 500) == ("cpu.weight", "10000")


def test_create_weighs_the_parent_whatever_the_number_of_servers(tmp_path):
    _fake_v1(tmp_path)
    cgroups.plan("required", "a", str(tmp_path), is_root=True).create(L)
    shares = tmp_path / "cpu" / "gemhub" / "cpu.shares"
    expected = cgroups.parent_cpu_weight("v1")[1]
    assert shares.read_text() == expected
    b = cgroups.plan("required", "b", str(tmp_path), is_root=True).create(L)
    assert shares.read_text() == expected
    import shutil

    for d in b.paths:  # what rmdir does on a real cgroup filesystem
        shutil.rmtree(d)
    b.remove()
    assert shares.read_text() == expected
