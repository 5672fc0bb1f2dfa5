"""Inside an environment, through the real hub and proxy: the GPU panel's API with a
simulated accelerator slice, terminals in /gemini/code with tmux/screen, pip mirrors,
TensorBoard behind jupyter-server-proxy, and a workspace's run-time limit set by an
admin and enforced by the idle-culler service."""

from __future__ import annotations

import re
import shlex
import time

import pytest

from hubproc import Hub, unique_name
from labclient import PRESET, SLICE, accelerated_hub, new_terminal, read_file, type_in_terminal

pytestmark = pytest.mark.integration

QUOTA = "/services/quota/api/v1"
MIRROR = "https://mirror.example.org/pypi/simple"
OVERRIDES = {
    "lab": {"pip_index_url": MIRROR, "pip_trusted_host": "mirror.example.org",
            "apt_mirror": "https://mirror.example.org/debian"},
    # Idle culling off: this module's servers must live; run-time limits still apply.
    "culling": {"enabled": False, "every": 5},
}


@pytest.fixture(scope="module")
def labhub(tmp_path_factory):
    from hubproc import keep_log, workdir

    h = accelerated_hub(workdir(), OVERRIDES)
    h.start()
    yield h
    h.stop()
    keep_log(h, "lab-environment")


def spawn(hub: Hub, prefix: str = "lab", **options) -> tuple[str, str]:
    name, token = hub.create_user(unique_name(prefix))
    r = hub.request("POST", f"/hub/api/users/{name}/server", token=token, json=options)
    assert r.status_code in (201, 202), r.text
    hub.wait_server(name)
    return name, token


@pytest.fixture(scope="module")
def running(labhub):
    return spawn(labhub, preset=PRESET)


def test_gpu_api_shows_the_simulated_slice(labhub, running):
    name, token = running
    r = labhub.request("GET", f"/user/{name}/gemhub/gpu", token=token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["error"] is None, body
    assert (body["spec"], body["kind"], body["simulated"]) == (SLICE["spec"], SLICE["kind"], True)
    (dev,) = body["devices"]
    expected = SLICE["devices"][0]
    for key in ("id", "index", "model", "memory_limit_mib", "memory_total_mib", "compute_percent"):
        assert dev[key] == expected[key], (key, dev)
    assert dev["simulated"] is True
    # an idle environment on a simulated device: nothing measured, nothing invented
    assert (dev["memory_used_mib"], dev["utilization_percent"], dev["temperature_c"], dev["power_w"]) == (None,) * 4

    # Only the server's owner sees it.
    _, other = labhub.create_user(unique_name("other"))
    assert labhub.request("GET", f"/user/{name}/gemhub/gpu", token=other).status_code == 403
    assert labhub.request("GET", f"/user/{name}/gemhub/gpu").status_code in (302, 403)


def test_terminal_tools_mirrors_and_tensorboard_url(labhub, running):
    name, token = running
    term = new_terminal(labhub, name, token)  # no cwd given: the environment's default
    type_in_terminal(labhub, name, token, term, (
        "{ pwd; pip config list; echo \"TB=$TENSORBOARD_PROXY_URL\"; echo \"PIP=$PIP_INDEX_URL\";"
        " tmux -V; screen --version | head -1; cat \"$GEMHUB_APT_SOURCES\"; } > /gemini/code/env.txt 2>&1"))
    text = read_file(labhub, name, token, "code/env.txt", until=lambda t: "URIs:" in t)
    lines = text.splitlines()
    assert lines[0] == "/gemini/code"
    assert f"global.index-url='{MIRROR}'" in text
    assert "global.trusted-host='mirror.example.org'" in text
    assert f"PIP={MIRROR}" in text
    assert f"TB=/user/{name}/proxy/%PORT%/" in text
    assert any(line.startswith("tmux ") for line in lines), text
    assert any(line.startswith("Screen version") for line in lines), text
    assert "URIs: https://mirror.example.org/debian" in text


def test_tensorboard_serves_a_run_written_in_the_environment(labhub, running):
    name, token = running
    term = new_terminal(labhub, name, token)
    script = ("from tensorboard.summary import Writer\n"
              "w = Writer('/gemini/output/run-a')\n"
              "for step in range(3): w.add_scalar('loss', 1.0 / (step + 1), step)\n"
              "w.close()\n"
              "open('/gemini/code/tb-done.txt', 'w').write('ok')\n")
    type_in_terminal(labhub, name, token, term, f"python -c {shlex.quote(script)}")
    read_file(labhub, name, token, "code/tb-done.txt")

    # The launcher entry's URL: jupyter-server-proxy starts TensorBoard on first use.
    r = labhub.request("GET", f"/user/{name}/tensorboard/", token=token, timeout=90)
    assert r.status_code == 200, r.text[:300]
    assert "tensorboard" in r.text.lower(), r.text[:300]
    # its fonts are named relative to the page (absolute /font-roboto/ reached the hub: 404)
    fonts = re.findall(r"url\((font-roboto/[^)]+\.woff2)\)", r.text)
    assert fonts and "url(/font-roboto/" not in r.text, r.text[:300]
    font = labhub.request("GET", f"/user/{name}/tensorboard/{fonts[0]}", token=token)
    assert font.status_code == 200 and len(font.content) > 1000, font.status_code
    deadline = time.monotonic() + 60
    runs: list = []
    while time.monotonic() < deadline and "run-a" not in runs:
        runs = labhub.request("GET", f"/user/{name}/tensorboard/data/runs", token=token).json()
        time.sleep(1)
    assert "run-a" in runs
    tags = labhub.request("GET", f"/user/{name}/tensorboard/data/plugin/scalars/tags", token=token).json()
    assert "loss" in tags["run-a"]


def _personal_workspace(hub: Hub, token: str) -> dict:
    r = hub.request("GET", f"{QUOTA}/workspaces", token=token)
    assert r.status_code == 200, r.text
    return next(w for w in r.json()["items"] if w["personal"])


def test_runtime_limit_is_admin_only_shown_and_enforced(labhub):
    name, token = labhub.create_user(unique_name("lim"))
    ws = _personal_workspace(labhub, token)
    assert ws["max_runtime_minutes"] is None
    path = f"{QUOTA}/workspaces/{ws['id']}"

    # The owner may rename but not lift or set the limit; bad values change nothing.
    r = labhub.request("PATCH", path, token=token, json={"max_runtime_minutes": 5})
    assert r.status_code == 403 and "administrators" in r.json()["message"]
    for bad in ("90", 0, -1, 1.5, True, 10**7):
        r = labhub.request("PATCH", path, token=labhub.admin_token, json={"max_runtime_minutes": bad})
        assert r.status_code == 400, (bad, r.text)
    r = labhub.request("PATCH", path, token=labhub.admin_token,
                       json={"name": unique_name("renamed"), "max_runtime_minutes": "x"})
    assert r.status_code == 400
    assert _personal_workspace(labhub, token)["name"] == ws["name"]

    r = labhub.request("PATCH", path, token=labhub.admin_token, json={"max_runtime_minutes": 1})
    assert r.status_code == 200 and r.json()["max_runtime_minutes"] == 1, r.text

    r = labhub.request("POST", f"/hub/api/users/{name}/server", token=token, json={})
    assert r.status_code in (201, 202), r.text
    labhub.wait_server(name)
    started = time.monotonic()
    body = labhub.request("GET", f"/user/{name}/gemhub/runtime", token=token).json()
    assert 0 < body["remaining_seconds"] <= 60 and body["message"].startswith("stops in "), body
    # the default preset holds no accelerator: the panel says "No accelerator"
    gpu = labhub.request("GET", f"/user/{name}/gemhub/gpu", token=token).json()
    assert gpu["devices"] == [] and gpu["error"] is None, gpu
    state = labhub.api("GET", f"/users/{name}").json()["servers"][""]["state"]
    assert state["stop_at"] == body["stop_at"]

    # The culler (every 5 s) stops it once the minute is up, idle culling being off.
    labhub.wait_stopped(name, timeout=120)
    assert time.monotonic() - started >= body["remaining_seconds"] - 5
    assert "run-time limit reached" in labhub.log_tail(400)
