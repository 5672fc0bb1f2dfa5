"""Talk to a user's JupyterLab server through the hub's proxy, as the browser does:
terminals over their websocket, files through the contents API (lab tests)."""

from __future__ import annotations

import asyncio
import json
import time

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from hubproc import REPO, Hub

# What the spawner writes for a half of a simulated A100 (schema in the accelerator API).
SLICE = {
    "spec": "nvidia:A100-80G:0.5", "kind": "fraction", "simulated": True,
    "visible_env": "CUDA_VISIBLE_DEVICES",
    "devices": [{"id": "sim-node/0", "index": 0, "uuid": "GPU-sim-0000", "model": "A100-80G",
                 "memory_limit_mib": 40960, "memory_total_mib": 81920, "compute_percent": 50,
                 "mig_profile": None}],
}


def with_environment(h: Hub, env: dict[str, str]) -> Hub:
    """Give every environment extra variables (stand-in for the accelerator allocation,
    which the spawner sets the same way) through a wrapper of the shipped hub config."""
    wrapper = h.workdir / "jupyterhub_config.py"
    wrapper.write_text(
        f"load_subconfig({str(REPO / 'hub_config' / 'jupyterhub_config.py')!r})\n"
        f"c.LocalGemSpawner.environment = {env!r}\n"
    )
    h.hub_config = wrapper
    return h


def new_terminal(hub, user: str, token: str, cwd: str | None = None) -> str:
    body = {"cwd": cwd} if cwd else {}
    r = hub.request("POST", f"/user/{user}/api/terminals", token=token, json=body)
    assert r.status_code == 200, r.text
    return r.json()["name"]


async def _type(hub, user: str, token: str, term: str, command: str, settle: float) -> str:
    url = f"ws://127.0.0.1:{hub.port}/user/{user}/terminals/websocket/{term}"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    out = []
    try:
        ws.write_message(json.dumps(["stdin", command + "\r"]))
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            try:
                msg = await asyncio.wait_for(ws.read_message(), timeout=max(0.05, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if msg is None:
                break
            kind, *rest = json.loads(msg)
            if kind == "stdout":
                out.append(rest[0])
    finally:
        ws.close()
    return "".join(out)


def type_in_terminal(hub, user: str, token: str, term: str, command: str, settle: float = 1.5) -> str:
    """Send one command line to a terminal and return what it printed within ``settle`` s."""
    return asyncio.run(_type(hub, user, token, term, command, settle))


def read_file(hub, user: str, token: str, path: str, timeout: float = 30, until=None) -> str:
    """A text file under /gemini (path relative to it), waiting until it exists (and
    ``until(text)`` holds when given)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        r = hub.request("GET", f"/user/{user}/api/contents/{path}?content=1&type=file&format=text", token=token)
        if r.status_code == 200:
            last = r.json()["content"]
            if until is None or until(last):
                return last
        time.sleep(0.5)
    raise AssertionError(f"{path} never appeared (or never matched) in the environment; last: {last!r}")
