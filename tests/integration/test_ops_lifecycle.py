"""Operations on one machine (issue 16, and issue 14's failed start): a start that fails says
why in one line and leaves no process behind; a hub killed with -9 twice and restarted runs
exactly one of each service and one culler and still reaches its servers; a backup taken
while the platform runs restores onto a fresh state directory (SQLite)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from gemhub.spawner.local import accounts, names
from hubproc import Hub, free_port
from opsdrill import check, populate, processes_of

pytestmark = [pytest.mark.integration]
VENV_BIN = Path(sys.executable).parent
ROOT = os.geteuid() == 0


def _workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="gemhub-ops-"))
    d.chmod(0o755)
    return d


def test_ssh_port_taken_stops_everything_and_says_why(artifacts):
    work = _workdir()
    state = work / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, GEMHUB_PORT=str(free_port()), GEMHUB_STATE_DIR=str(state),
                   GEMHUB_SSH_PORT=str(port), GEMHUB_CONFIG=str(work / "none.yaml"))
        # no base image build first: that is the images tests' subject, and minutes long
        (work / "none.yaml").write_text("images: {autobuild: false}\n")
        # what `make run` runs once everything is installed
        p = subprocess.run([sys.executable, "-m", "gemhub.hub_config.run"], env=env, cwd=work,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    (artifacts / "ops-ssh-port-taken.log").write_text(p.stdout)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 1, p.stdout[-3000:]
    assert lines[-1] == f"ssh: port {port} is in use; set GEMHUB_SSH_PORT or services.ssh.port", lines[-20:]
    assert processes_of(state) == [], [(q.pid, q.cmdline()) for q in processes_of(state)]
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def platform(artifacts):
    """A hub (SQLite) with a user, workspace, running server, dataset and SSH key."""
    h = Hub(_workdir())
    h.start(timeout=120)
    try:
        made = populate(h)
    except BaseException:
        h.stop()
        raise
    yield h, made
    h.stop()
    (artifacts / "ops-platform-sqlite.log").write_bytes(h.log_path.read_bytes())
    if ROOT:
        unix = names.unix_name(made.user)
        for q in psutil.process_iter(["username"]):
            if q.info["username"] == unix:
                q.kill()
        accounts.remove_empty_groups(sorted(set(accounts.remove_user(unix))))
    shutil.rmtree(h.workdir, ignore_errors=True)


def roles(state_dir: Path) -> Counter:
    """How many of each of the platform's processes run: hub, proxy, services, culler."""
    seen: Counter = Counter()
    for q in processes_of(state_dir):
        try:
            cmd = " ".join(q.cmdline())
        except psutil.Error:
            continue
        if q.status() == psutil.STATUS_ZOMBIE:
            continue
        for role, marker in (("hub", "bin/jupyterhub -f"), ("proxy", "configurable-http-proxy"),
                             ("quota", "gemhub.services.quota.app"), ("data", "gemhub.services.data.app"),
                             ("ssh", "gemhub.services.ssh.app"), ("idle-culler", "gemhub.lab.culling")):
            if marker in cmd:
                seen[role] += 1
    return seen


def test_kill9_twice_leaves_one_of_each_and_servers_reachable(platform):
    h, made = platform
    for _ in range(2):
        h.kill9()
        h.start(timeout=180)
    want = Counter({"hub": 1, "proxy": 1, "quota": 1, "data": 1, "ssh": 1, "idle-culler": 1})
    deadline = time.monotonic() + 60
    while roles(h.state_dir) != want and time.monotonic() < deadline:
        time.sleep(0.5)  # the killed hub's services and culler are still shutting down
    assert roles(h.state_dir) == want
    time.sleep(2)
    assert roles(h.state_dir) == want, "a second service or culler appeared"
    # the server outlived both crashes and is reachable through the new proxy
    r = h.request("GET", f"/user/{made.user}/api/status", token=made.token)
    assert r.status_code == 200, r.text[:300]
    r = h.request("GET", f"/user/{made.user}/api/contents/code/drill.txt", token=made.token)
    assert r.status_code == 200, r.text[:300]


def test_backup_while_running_restores_onto_a_fresh_state_dir(platform, artifacts):
    h, made = platform
    env = dict(os.environ, GEMHUB_CONFIG=str(h.config_file), GEMHUB_STATE_DIR=str(h.state_dir))
    dest = h.workdir / "backup"
    started = time.monotonic()
    out = subprocess.run([str(VENV_BIN / "gemhub"), "admin", "backup", str(dest)], env=env,
                         capture_output=True, text=True, timeout=600)
    backup_s = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert h.request("GET", f"/user/{made.user}/api/status", token=made.token).status_code == 200  # still running
    h.stop()
    shutil.rmtree(h.state_dir)  # the disaster
    started = time.monotonic()
    out = subprocess.run([str(VENV_BIN / "gemhub"), "admin", "restore", str(dest)], env=env,
                         capture_output=True, text=True, timeout=600)
    restore_s = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    h.start(timeout=180)
    check(h, made)
    figures = {"engine": "sqlite", "backup_s": round(backup_s, 2), "restore_s": round(restore_s, 2),
               "backup_bytes": sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())}
    (artifacts / "ops-drill-sqlite.json").write_text(json.dumps(figures))
    print("drill (sqlite):", figures)
    # a second restore onto the running platform is refused, and says why
    out = subprocess.run([str(VENV_BIN / "gemhub"), "admin", "restore", str(dest)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "stop it first" in out.stderr, out.stderr
