"""gemhub.lab's pure parts: the accelerator slice and its figures, run-time limits,
package mirrors, the culler's arbiter, and their platform configuration."""

from __future__ import annotations

import datetime as dt
import json
import math
import types
from dataclasses import dataclass, field

import pytest

from config_inputs import INPUTS
from gemhub.hub_config import configurer
from gemhub.lab import culling, gpu, hubservice, limits, mirrors

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def slice_json(**over):
    d = {"spec": "nvidia:A100-80G:0.5", "kind": "fraction", "simulated": False, "visible_env": "CUDA_VISIBLE_DEVICES",
         "devices": [{"id": "node-a/0", "index": 0, "uuid": "GPU-1", "model": "A100-80G",
                      "memory_limit_mib": 40960, "memory_total_mib": 81920, "compute_percent": 50,
                      "mig_profile": None}]}
    d.update(over)
    return json.dumps(d)


@dataclass
class Sample:
    device_id: str
    uuid: str
    utilization_percent: float = 30.0
    memory_used_mib: int = 60000
    temperature_c: float = 50.0
    power_w: float = 100.0
    processes: tuple = field(default_factory=tuple)


def test_slice_unset_or_empty_is_no_accelerator():
    assert gpu.parse_slice(None) is gpu.NO_SLICE
    assert gpu.parse_slice("  ") is gpu.NO_SLICE
    assert gpu.report(gpu.NO_SLICE, None)["devices"] == []


@pytest.mark.parametrize("text, needle", [
    ("{", "not JSON"),
    ("[]", "'devices' list"),
    ('{"devices": [{"index": 0}]}', "needs an 'id'"),
    ('{"devices": [{"id": "a", "index": "0"}]}', "whole number"),
])
def test_slice_errors_say_what_is_wrong(text, needle):
    with pytest.raises(gpu.SliceError, match=needle):
        gpu.parse_slice(text)


def test_fraction_counts_only_this_environments_processes_and_caps_at_the_limit():
    s = gpu.parse_slice(slice_json())
    sample = Sample("other-id", "GPU-1", processes=((10, 3000), (11, 500), (99, 70000)))
    (f,) = gpu.figures(s, [sample], own_pids={10, 11})  # matched by uuid
    assert f.memory_used_mib == 3500 and f.memory_limit_mib == 40960
    (f,) = gpu.figures(s, [sample], own_pids={99})
    assert f.memory_used_mib == 40960  # never shown above the slice's limit


def test_whole_device_uses_device_memory_and_nan_becomes_null():
    s = gpu.parse_slice(slice_json(kind="whole"))
    body = gpu.report(s, lambda: [Sample("node-a/0", "", power_w=math.nan)], lambda: set())
    (d,) = body["devices"]
    assert d["memory_used_mib"] == 40960 and d["power_w"] is None and body["error"] is None
    json.dumps(body, allow_nan=False)


def test_unsampled_device_keeps_limits_and_sampler_failure_is_reported():
    s = gpu.parse_slice(slice_json())
    (f,) = gpu.figures(s, [])
    assert f.memory_used_mib is None and f.utilization_percent is None and f.memory_limit_mib == 40960

    def broken():
        raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

    body = gpu.report(s, broken)
    assert "NVML_ERROR_GPU_IS_LOST" in body["error"] and body["devices"][0]["memory_limit_mib"] == 40960


def test_simulated_slice_shows_its_limits_and_no_invented_load():
    s = gpu.parse_slice(slice_json(simulated=True))
    body = gpu.report(s, gpu.default_sampler(s), gpu.own_processes)
    (d,) = body["devices"]
    assert d["simulated"] and body["error"] is None
    assert (d["memory_limit_mib"], d["memory_total_mib"], d["compute_percent"]) == (40960, 81920, 50)
    assert (d["utilization_percent"], d["memory_used_mib"], d["temperature_c"], d["power_w"]) == (None,) * 4


def test_limits():
    assert limits.check_minutes(None) is None and limits.check_minutes(90) == 90
    for bad in (0, -5, 525_601, 1.5, "90", True):
        with pytest.raises(limits.LimitError):
            limits.check_minutes(bad)
    when = limits.deadline(NOW, 80)
    assert limits.format_deadline(when) == "2026-11-25T09:20:00Z"
    assert limits.parse_deadline("2026-11-25T09:20:00Z") == when
    assert limits.deadline(NOW, None) is None
    with pytest.raises(limits.LimitError):
        limits.deadline(NOW.replace(tzinfo=None), 5)
    with pytest.raises(limits.LimitError):
        limits.parse_deadline("2026-11-25T09:20:00")  # no zone
    assert limits.remaining_seconds(when, NOW) == 4800
    assert limits.describe(4800) == "stops in 1 h 20 min"
    assert limits.describe(3600) == "stops in 1 h"
    assert limits.describe(59) == "stops in 1 min"
    assert limits.describe(0).startswith("stopping now")
    assert limits.describe(None) == ""
    assert limits.expired(when, when) and not limits.expired(when, NOW) and not limits.expired(None, NOW)


def test_mirrors_validate_and_write(tmp_path):
    for cfg, needle in [({"pip_index_url": "ftp://x/simple"}, "pip_index_url"),
                        ({"apt_mirror": "mirror.example.org"}, "apt_mirror"),
                        ({"pip_trusted_host": "a b"}, "pip_trusted_host"),
                        ({"pip_index_url": 5}, "must be text")]:
        with pytest.raises(mirrors.MirrorError, match=needle):
            mirrors.Mirrors.from_config(cfg)
    assert mirrors.write(mirrors.Mirrors.from_config({}), str(tmp_path / "none")) == {}
    assert not (tmp_path / "none").exists()

    m = mirrors.Mirrors.from_config({"pip_index_url": "https://m.example/simple", "pip_trusted_host": "m.example",
                                     "apt_mirror": "https://m.example/debian/"})
    env = mirrors.write(m, str(tmp_path / "lab"))
    assert env["PIP_INDEX_URL"] == "https://m.example/simple" and env["PIP_TRUSTED_HOST"] == "m.example"
    conf = (tmp_path / "lab" / "pip.conf").read_text()
    assert "index-url = https://m.example/simple" in conf and "trusted-host = m.example" in conf
    assert env["PIP_CONFIG_FILE"] == str(tmp_path / "lab" / "pip.conf")
    apt = (tmp_path / "lab" / mirrors.APT_SOURCES).read_text()
    assert "URIs: https://m.example/debian\n" in apt and "Suites: " in apt
    assert oct((tmp_path / "lab" / "pip.conf").stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in (tmp_path / "lab").iterdir() if p.name.startswith(".")] == []


def server(preset="B1", stop_at=None):
    state = {"preset": preset}
    if stop_at:
        state["stop_at"] = stop_at
    return {"name": "", "user_options": {"preset": preset}, "state": state}


def reason(srv, idle_s, **kw):
    args = dict(idle_timeout=3600, accelerator_timeout=600, accelerated_presets={"G1"}, cull_idle=True)
    args.update(kw)
    return culling.cull_reason(inactive=dt.timedelta(seconds=idle_s), server=srv, now=NOW, **args)


def test_cull_reason():
    assert reason(server(), 100) is None
    assert reason(server(), 3600) == culling.IDLE
    assert reason(server("G1"), 599) is None
    assert reason(server("G1"), 600) == culling.IDLE_ACCELERATOR
    assert reason(server("G1"), 600, accelerator_timeout=0) is None  # 0: same as timeout
    # a passed deadline stops even an active server, idle culling on or off
    assert reason(server(stop_at="2026-11-25T07:59:59Z"), 0) == culling.RUNTIME_LIMIT
    assert reason(server(stop_at="2026-11-25T07:59:59Z"), 0, cull_idle=False) == culling.RUNTIME_LIMIT
    assert reason(server(stop_at="2026-11-25T08:00:01Z"), 0) is None
    assert reason(server(), 99999, cull_idle=False) is None
    assert reason(server(stop_at="garbage"), 0) is None
    # what the server holds wins over its preset: an allocation, or a custom spec
    held = server()
    held["state"]["accelerator_allocation"] = {"holder": "server:a/", "device_ids": ["local/0"]}
    assert reason(held, 600) == culling.IDLE_ACCELERATOR
    custom = server()
    custom["user_options"]["accelerator"] = "1(A100-80G)"
    assert reason(custom, 600) == culling.IDLE_ACCELERATOR
    custom["user_options"]["accelerator"] = "0"
    assert reason(custom, 600) is None


def test_platform_config_for_lab_and_culling():
    cfg = configurer.merge_platform({"culling": {"timeout": 20, "every": 5, "enabled": False}}, {})
    assert cfg["lab"] == configurer.DEFAULTS["lab"]
    for bad, needle in [({"culling": {"timeout": 0}}, "culling.timeout"),
                        ({"culling": {"max_age": -1}}, "culling.max_age"),
                        ({"culling": {"enabled": "yes"}}, "true or false"),
                        ({"lab": {"pip_index_url": "not a url"}}, "lab.pip_index_url"),
                        ({"lab": {"pypi": "x"}}, "unknown key")]:
        with pytest.raises(configurer.ConfigError, match=needle):
            configurer.merge_platform(bad, {})
    presets = [{"name": "B1"}, {"name": "G1", "accelerator": "0.5(A100-80G)"}, {"name": "C1", "accelerator": "0"}]
    assert hubservice.accelerated_presets(presets) == ["G1"]
    out = configurer.build_config(cfg, INPUTS)
    (culler,) = [s for s in out["JupyterHub"]["services"] if s["name"] == "idle-culler"]
    assert culler["command"][:3] == [INPUTS.python, "-m", "gemhub.lab.culling"]
    assert "--timeout=20" in culler["command"] and "--cull-idle=False" in culler["command"]
    (role,) = [r for r in out["JupyterHub"]["load_roles"] if r.get("services") == ["idle-culler"]]
    assert "delete:servers" in role["scopes"] and "admin:users" not in role["scopes"]
    assert out["LocalGemSpawner"]["lab_mirrors"] == cfg["lab"]


def test_an_unmeasured_reading_stays_unmeasured_on_a_fraction():
    s = gpu.parse_slice(slice_json(simulated=True))
    sample = Sample("node-a/0", "GPU-1", memory_used_mib=None)
    (f,) = gpu.figures(s, [sample], own_pids=set())
    assert f.memory_used_mib is None


def test_tensorboard_font_urls_become_relative_to_the_page():
    import gzip

    from tornado.httputil import HTTPHeaders

    from gemhub.lab.tensorboard import relative_fonts

    page = b"<style>src: local('Roboto'), url(/font-roboto/x.woff2) format('woff2');</style>"

    def response(body, **headers):
        return types.SimpleNamespace(body=body, headers=HTTPHeaders({"Content-Type": "text/html; charset=utf-8",
                                                                      **headers}))

    plain = response(page)
    relative_fonts(plain)
    assert b"url(font-roboto/x.woff2)" in plain.body and b"url(/font-roboto/" not in plain.body
    zipped = response(gzip.compress(page), **{"Content-Encoding": "gzip"})
    relative_fonts(zipped)
    assert b"url(font-roboto/x.woff2)" in zipped.body and "Content-Encoding" not in zipped.headers
    other = response(b"url(/font-roboto/x)", **{"Content-Type": "text/css"})
    relative_fonts(other)
    assert other.body == b"url(/font-roboto/x)"  # only pages are touched
