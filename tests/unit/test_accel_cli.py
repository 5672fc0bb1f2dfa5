"""`gemhub spec parse|render` through click's CliRunner."""

import json

from click.testing import CliRunner

from gemhub.cli.main import main


def run(*args):
    return CliRunner().invoke(main, ["spec", *args])


def test_parse_prints_canonical_json():
    result = run("parse", " 8(Ascend910B) ")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert (data["spec"], data["vendor"], data["model"], data["count"]) == ("8(910B)", "ascend", "910B", 8)


def test_parse_error_exits_2_with_the_column():
    result = run("parse", "1(V1OO)")
    assert result.exit_code == 2
    assert "column 3" in result.output and "unknown 'V1OO'" in result.output


def test_render_local_fraction():
    result = run("render", "0.5(A100-80G)", "--mps-pipe-dir", "/run/mps/0")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    env = data["env"]
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40960M"
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/run/mps/0"
    assert json.loads(env["GEMHUB_ACCELERATOR"])["simulated"] is True
    assert all(d["simulated"] for d in data["simulated_devices"])


def test_render_local_on_given_devices_and_no_capacity():
    ok = run("render", "2", "--device", "RTX4090:2", "--device", "T4")
    assert ok.exit_code == 0
    assert json.loads(ok.output)["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    full = run("render", "3(A100-80G)", "--device", "A100-80G:2")
    assert full.exit_code == 1 and "insufficient_devices" in full.output
    bad = run("render", "1", "--device", "Z9000:1")
    assert bad.exit_code == 2 and "--device" in bad.output


def test_render_none_locally():
    data = json.loads(run("render", "0").output)
    assert data["env"]["NVIDIA_VISIBLE_DEVICES"] == "none" and data["allocation"] is None


def test_render_kubernetes_profiles():
    hami = json.loads(run("render", "1(vgpu,10G,30%)", "--runtime", "kubernetes", "--profile", "hami").output)
    assert hami["limits"] == {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "10240", "nvidia.com/gpucores": "30"}
    native = json.loads(run("render", "1(T4)", "--runtime", "kubernetes").output)
    assert native["node_selector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    volcano = run("render", "1(mig-1g.10gb)", "--runtime", "kubernetes", "--profile", "volcano")
    assert volcano.exit_code == 2 and "cannot express" in volcano.output
