"""Talk to a user's JupyterLab server through the hub's proxy, as the browser does:
terminals over their websocket, files through the contents API (lab tests)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from hubproc import Hub, deep_merge

# Environments in the lab tests may hold half a simulated A100 (preset G1): what the
# spawner then puts in GEMHUB_ACCELERATOR, and the platform config that gives it.
PRESET = "G1"
SLICE = {
    "spec": "0.5(A100-80G)", "kind": "fraction", "simulated": True,
    "visible_env": "CUDA_VISIBLE_DEVICES",
    "devices": [{"id": "local/0", "index": 0, "model": "A100-80G",
                 "memory_limit_mib": 40960, "memory_total_mib": 81920, "compute_percent": 50,
                 "mig_profile": None}],
}
ACCELERATOR_CONFIG = {
    "accelerators": {"inventory": "simulated", "simulated": [{"node": "local", "model": "A100-80G", "count": 1}]},
    "presets": [{"name": "B1", "cpu": 1, "memory": "2G", "accelerator": "0"},
                {"name": PRESET, "cpu": 1, "memory": "2G", "accelerator": "0.5(A100-80G)"}],
}


def accelerated_hub(workdir: Path, overrides: dict | None = None) -> Hub:
    """A Hub (not started) with the presets above on a simulated A100."""
    return Hub(workdir, deep_merge(overrides or {}, ACCELERATOR_CONFIG))


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


async def _run_in_kernel(hub, user: str, token: str, code: str, timeout: float) -> str:
    r = hub.request("POST", f"/user/{user}/api/kernels", token=token, json={"name": "python3"})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    url = f"ws://127.0.0.1:{hub.port}/user/{user}/api/kernels/{kernel}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    out: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the kernel did not finish within {timeout}s; output so far: {''.join(out)!r}")
            raw = await asyncio.wait_for(ws.read_message(), timeout=left)
            if raw is None:
                raise AssertionError("the kernel's websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                out.append("\n".join(content.get("traceback") or [content.get("evalue", "")]))
            elif kind == "status" and content.get("execution_state") == "idle":
                return "".join(out)
    finally:
        ws.close()
        hub.request("DELETE", f"/user/{user}/api/kernels/{kernel}", token=token)


def run_in_kernel(hub, user: str, token: str, code: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh kernel of the user's server (what a notebook cell does) and
    return what it printed."""
    return asyncio.run(_run_in_kernel(hub, user, token, code, timeout))
