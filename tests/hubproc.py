"""A real GemHub (jupyterhub + configurable-http-proxy + services) as a subprocess.

Tests talk to it over HTTP, like the idle-culler's test-suite does; nothing is mocked.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("GEMHUB_TEST_ARTIFACTS", REPO / "test-artifacts"))
VENV_BIN = Path(sys.executable).parent

# Short timeouts so a failing spawn fails fast; everything else is the shipped default.
TEST_CONFIG: dict[str, Any] = {
    "spawner": {"start_timeout": 60, "http_timeout": 30},
    "hub": {"log_level": "DEBUG"},
    # building images takes minutes: only the image tests build (a small test catalog, once a session)
    "images": {"default": "host", "autobuild": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str = "u") -> str:
    """A hub user name no earlier test (or run) used: unix accounts outlive a hub."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Hub:
    def __init__(self, workdir: Path, overrides: dict | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The state root must be traversable by per-user accounts (pytest's tmp is 0700).
        self.workdir.chmod(0o755)
        self.state_dir = self.workdir / "state"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/hub/api"
        self.admin_token = secrets.token_hex(20)
        self.admin_password = "Adm1n-" + secrets.token_hex(6)
        self.config_file = self.workdir / "gemhub.yaml"
        self.config = deep_merge(TEST_CONFIG, overrides or {})
        # Every hub gets its own SSH gateway port: several hubs run at once in a test session.
        self.config = deep_merge({"services": {"ssh": {"port": free_port()}}}, self.config)
        self.ssh_port = self.config["services"]["ssh"]["port"]
        self.config_file.write_text(yaml.safe_dump(self.config))
        self.log_path = self.workdir / "hub.log"
        # A wrapper config (load_subconfig + extra lines) may replace the shipped one.
        self.hub_config = REPO / "hub_config" / "jupyterhub_config.py"
        self.wait_for_quota = True
        self.proc: subprocess.Popen | None = None

    # -- process -----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GEMHUB_CONFIG=str(self.config_file),
            GEMHUB_PORT=str(self.port),
            GEMHUB_STATE_DIR=str(self.state_dir),
            GEMHUB_ADMIN_TOKEN=self.admin_token,
            GEMHUB_ADMIN_PASSWORD=self.admin_password,
            PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        )
        return env

    def start(self, timeout: float = 120) -> "Hub":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(self.hub_config)],
            cwd=self.workdir, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.api_url}/", timeout=2)
                q = httpx.get(f"{self.url}/services/quota/health", timeout=2) if self.wait_for_quota else r
                if r.status_code == 200 and q.status_code == 200:
                    return
                last = f"hub {r.status_code}, quota {q.status_code}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.3)
        raise TimeoutError(f"hub not ready after {timeout}s ({last})\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill9(self) -> None:
        """Crash the hub process alone (its proxy and services are left to fend for themselves)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 45) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Whatever is left in the hub's process group (proxy, services) goes too.
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == pgid:
                    p.kill()
            except (ProcessLookupError, psutil.Error):
                pass
        self.proc = None

    def restart(self, timeout: float = 60) -> "Hub":
        self.stop()
        return self.start(timeout)

    # -- HTTP ----------------------------------------------------------------------------
    def request(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        kw.setdefault("timeout", 30)
        return httpx.request(method, f"{self.url}{path}", headers=headers, **kw)

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        """The hub REST API as admin."""
        kw.setdefault("token", self.admin_token)
        return self.request(method, f"/hub/api{path}", **kw)

    def create_user(self, name: str | None = None) -> tuple[str, str]:
        """A hub user and an API token with all of that user's permissions."""
        name = name or unique_name()
        r = self.api("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text
        r = self.api("POST", f"/users/{name}/tokens", json={"note": "test"})
        assert r.status_code == 201, r.text
        return name, r.json()["token"]

    def wait_server(self, name: str, server: str = "", timeout: float = 90) -> dict:
        """Wait until a user's server is ready; returns the server model."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{name}").json()
            s = model.get("servers", {}).get(server)
            if s and s.get("ready"):
                return s
            if s is None and not model.get("pending"):
                raise RuntimeError(f"server of {name} is gone\n{self.log_tail()}")
            time.sleep(0.3)
        raise TimeoutError(f"server of {name} not ready\n{self.log_tail()}")

    def wait_stopped(self, name: str, server: str = "", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{name}").json()
            if server not in model.get("servers", {}):
                return
            time.sleep(0.3)
        raise TimeoutError(f"server of {name} did not stop\n{self.log_tail()}")


def workdir() -> Path:
    """A fresh working directory for a hub (not pytest's tmp_path, whose root is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="gemhub-test-"))
    d.chmod(0o755)
    return d


def keep_log(h: Hub, name: str) -> None:
    """Keep the hub's log as a test artifact and remove its working directory."""
    if h.log_path.exists():
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(h.log_path, ARTIFACTS / f"{name}.log")
    shutil.rmtree(h.workdir, ignore_errors=True)
