"""Real processes for the ledger's tests and benchmark: Debian's PostgreSQL on loopback, extra
quota service processes sharing a hub's database, and a stand-in jobs service that owns a
stop hook. Nothing here is mocked: each is a process talked to over HTTP or TCP."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from hubproc import Hub, free_port

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
QUOTA_PREFIX = "/services/quota/"


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (TESTING-NOTES: initdb as postgres, pg_ctl)."""

    def __init__(self):
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL is not installed (tests/install-system-deps.sh installs it)")
        if os.geteuid() != 0:
            raise RuntimeError("starting PostgreSQL here needs root (to run it as the postgres account)")
        self.dir = Path(tempfile.mkdtemp(prefix="gemhub-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()

    def _as_postgres(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True,
                              text=True, timeout=120, **kw)

    def start(self) -> "Postgres":
        self._as_postgres(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                          "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c max_connections=300")
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                          str(self.dir / "log"), "-w", "start")
        return self

    def create_db(self, name: str) -> str:
        self._as_postgres(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                          "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def hub_secret(hub: Hub, name: str) -> str:
    return (hub.state_dir / "secrets" / name).read_text().strip()


def quota_token(hub: Hub) -> str:
    return hub_secret(hub, "quota-service.token")


def platform_of(hub: Hub) -> dict:
    """The platform document the hub gave its quota service (its command's environment)."""
    from gemhub.hub_config import configurer, services

    env = hub.env()
    cfg = configurer.merge_platform(__import__("yaml").safe_load(hub.config_file.read_text()) or {}, env)
    return services.quota_platform(cfg)


class QuotaProcess:
    """One more quota service process (the same code the hub runs), on its own port,
    authenticating callers through ``hub`` and keeping its ledger at ``db_url``."""

    def __init__(self, hub: Hub, db_url: str, name: str = "extra", platform: dict | None = None,
                 env: dict | None = None):
        self.hub = hub
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{QUOTA_PREFIX}"
        self.log_path = hub.workdir / f"quota-{name}-{self.port}.log"
        self.platform = platform if platform is not None else platform_of(hub)
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "QuotaProcess":
        env = dict(os.environ)
        env.update({
            "JUPYTERHUB_API_URL": f"{self.hub.url}/hub/api",
            "JUPYTERHUB_API_TOKEN": quota_token(self.hub),
            "JUPYTERHUB_SERVICE_NAME": "quota",
            "JUPYTERHUB_SERVICE_PREFIX": QUOTA_PREFIX,
            "JUPYTERHUB_CLIENT_ID": "service-quota",
            "JUPYTERHUB_BASE_URL": "/",
            "GEMHUB_QUOTA_PLATFORM": json.dumps(self.platform),
            **self.extra_env,
        })
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gemhub.services.quota.app", f"--QuotaService.port={self.port}",
             f"--QuotaService.db_url={self.db_url}", f"--QuotaService.state_dir={self.hub.state_dir}",
             "--QuotaService.die_with_hub=False"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"quota process exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"quota process not ready: {self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class FakeJobs:
    """tests/ledger_jobs.py as a process: the owner of ``job`` workloads with a stop hook."""

    def __init__(self, hub: Hub, token: str, workdir: Path):
        self.hub = hub
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = "hook-secret-" + os.urandom(8).hex()
        self.log_path = workdir / f"fake-jobs-{self.port}.log"
        self.token = token
        self.proc: subprocess.Popen | None = None

    def start(self) -> "FakeJobs":
        env = dict(os.environ, FAKE_JOBS_PORT=str(self.port), FAKE_JOBS_SECRET=self.secret,
                   FAKE_JOBS_QUOTA=f"{self.hub.url}{QUOTA_PREFIX}api/v1", FAKE_JOBS_TOKEN=self.token)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "ledger_jobs.py")], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/events", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("fake jobs service did not start")

    def events(self) -> list[dict]:
        return httpx.get(f"{self.url}/events", timeout=10).json()

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


# -- the hub the ledger's tests share ----------------------------------------------------------
JOBS_TOKEN_FILE = "jobs-test.token"
LEDGER_CONFIG = {
    "accelerators": {"inventory": "simulated",
                     "simulated": [{"node": "n1", "model": "A100-80G", "count": 4},
                                   {"node": "n2", "model": "RTX4090", "count": 1},
                                   {"node": "n3", "model": "MI210", "count": 1}]},
    "presets": [
        {"name": "B1", "cpu": 1, "memory": "1G", "price_per_hour": "0.50"},
        {"name": "G1", "cpu": 1, "memory": "1G", "accelerator": "1(RTX4090)", "price_per_hour": "3.00"},
        {"name": "A1", "cpu": 1, "memory": "1G", "accelerator": "1(A100-80G)", "price_per_hour": "12.00"},
        {"name": "H1", "cpu": 1, "memory": "1G", "accelerator": "0.5(A100-80G)", "price_per_hour": "6.00"},
    ],
    "services": {"quota": {"reconcile_seconds": 2, "reconcile_grace_seconds": 5,
                           "priority_levels": {"low": 0, "normal": 100, "high": 200}, "max_priority": 200}},
}

_WRAPPER = """\
# The shipped configuration plus one more hub service: the ledger tests' stand-in jobs service.
load_subconfig({config!r})
c.JupyterHub.services.append({{"name": "jobs-test", "api_token": {token!r}}})
c.JupyterHub.load_roles.append({{"name": "jobs-test", "services": ["jobs-test"],
                                 "scopes": ["access:services!service=quota"]}})
"""


class LedgerHub(Hub):
    """A hub whose spawns pause before start() returns while ``spawn_pause`` exists."""

    @property
    def spawn_pause(self) -> Path:
        return self.workdir / "spawn-pause"

    def env(self) -> dict[str, str]:
        return {**super().env(), "GEMHUB_TEST_SPAWN_PAUSE": str(self.spawn_pause)}


def ledger_hub(workdir: Path) -> Hub:
    """A hub with simulated devices (4 A100-80G on n1, 1 RTX4090 on n2, 1 MI210 on n3: AMD has
    no sharing stack), a 2 s reconciliation
    cycle and a registered hub service ``jobs-test`` (its token: ``hub.jobs_token``)."""
    hub = LedgerHub(workdir, LEDGER_CONFIG)
    hub.jobs_token = os.urandom(16).hex()
    wrapper = workdir / "jupyterhub_config.py"
    wrapper.write_text(_WRAPPER.format(config=str(hub.hub_config), token=hub.jobs_token))
    hub.hub_config = wrapper
    return hub.start()
