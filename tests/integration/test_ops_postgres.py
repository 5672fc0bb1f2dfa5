"""GemHub on PostgreSQL (issue 16): a restart of the database server under load fails no
request, no password or token shows on a command line or in a log, and a backup taken while
the platform runs restores after the state directory and databases are wiped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gemhub.spawner.local import accounts, names
from hubproc import Hub, unique_name
from opsdrill import check, populate, processes_of
from pgcluster import Postgres, unavailable

pytestmark = [pytest.mark.integration]
VENV_BIN = Path(sys.executable).parent
DATABASES = ("hub", "quota", "data", "ssh", "images")


@pytest.fixture(scope="module")
def pg():
    why = unavailable()
    if why:
        pytest.skip(why)
    server = Postgres().start()
    yield server
    server.stop()


def _config(pg: Postgres, dbs: dict[str, str]) -> dict:
    return {"database_url": pg.url(dbs["hub"]),
            "services": {s: {"database_url": pg.url(dbs[s])} for s in ("quota", "data", "ssh")},
            "images": {"database_url": pg.url(dbs["images"])}}


@pytest.fixture(scope="module")
def pg_platform(pg, artifacts):
    dbs = {db: unique_name(f"gem_{db}_") for db in DATABASES}
    for name in dbs.values():
        pg.create_database(name)
    work = Path(tempfile.mkdtemp(prefix="gemhub-ops-pg-"))
    work.chmod(0o755)
    h = Hub(work, _config(pg, dbs))
    h.start(timeout=120)
    try:
        made = populate(h)
    except BaseException:
        h.stop()
        raise
    yield h, made, dbs
    h.stop()
    (artifacts / "ops-platform-postgres.log").write_bytes(h.log_path.read_bytes())
    if os.geteuid() == 0:
        unix = names.unix_name(made.user)
        for q in psutil.process_iter(["username"]):
            if q.info["username"] == unix:
                q.kill()
        accounts.remove_empty_groups(sorted(set(accounts.remove_user(unix))))
    shutil.rmtree(work, ignore_errors=True)


def test_database_restart_under_load_fails_no_request(pg, pg_platform):
    h, made, _ = pg_platform
    users = [made] + [None] * 3
    tokens = [made.token] + [h.create_user(unique_name("pgl"))[1] for _ in range(3)]
    paths = ["/hub/api/user", "/services/quota/api/v1/workspaces", "/services/data/api/v1/assets",
             "/services/ssh/api/v1/keys", f"/user/{made.user}/api/status"]
    failures: list[str] = []
    done = {"n": 0}
    stop = threading.Event()

    def client(i: int, token: str) -> None:
        with httpx.Client(base_url=h.url, headers={"Authorization": f"token {token}"}, timeout=120) as c:
            while not stop.is_set():
                for path in paths if users[i] else paths[:-1]:
                    try:
                        r = c.get(path)
                        if r.status_code != 200:
                            failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                    except httpx.HTTPError as e:
                        failures.append(f"{path}: {e!r}")
                    done["n"] += 1

    threads = [threading.Thread(target=client, args=(i, t)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            time.sleep(2)
            before = done["n"]
            pg.restart()
            time.sleep(2)
            assert done["n"] > before, "no request went through around the restart"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=180)
    assert failures == [], failures[:10]
    assert done["n"] > 40


def test_no_secret_on_a_command_line_or_in_a_log(pg, pg_platform):
    h, made, _ = pg_platform
    secret_files = [p for p in (h.state_dir / "secrets").iterdir() if p.suffix == ".token" or
                    p.name in ("admin-password", "jupyterhub_cookie_secret")]
    secrets = {pg.password: "database password", made.token: "a user's API token",
               h.admin_token: "the admin token", h.admin_password: "the admin password",
               **{p.read_text().strip(): p.name for p in secret_files}}
    # the running server's own hub token (JupyterHub gives it in the server's environment)
    unix = names.unix_name(made.user)
    for q in psutil.process_iter(["username", "cmdline"]):
        if q.info["username"] == unix and "jupyterhub-singleuser" in " ".join(q.info["cmdline"] or []):
            secrets[q.environ()["JUPYTERHUB_API_TOKEN"]] = "the server's API token"
    assert "the server's API token" in secrets.values()
    ps = subprocess.run(["ps", "-eo", "pid,args", "--cols", "100000"], capture_output=True, text=True).stdout
    logs = [h.log_path, *(p for p in (h.state_dir / "logs").rglob("*") if p.is_file())]
    for secret, what in secrets.items():
        assert secret not in ps, f"{what} is on a command line"
        for log in logs:
            assert secret not in log.read_text(errors="replace"), f"{what} is in {log}"
    # a service's environment (where its secrets are) is not readable by a user's account
    service = next(q for q in processes_of(h.state_dir) if "gemhub.services.quota.app" in " ".join(q.cmdline()))
    assert pg.password in service.environ()["GEMHUB_DATABASE_URL"]
    if os.geteuid() == 0:
        r = subprocess.run(["runuser", "-u", names.unix_name(made.user), "--", "cat",
                            f"/proc/{service.pid}/environ"], capture_output=True, text=True)
        assert r.returncode != 0 and pg.password not in r.stdout


def test_backup_while_running_restores_after_a_wipe(pg, pg_platform, artifacts):
    h, made, dbs = pg_platform
    env = dict(os.environ, GEMHUB_CONFIG=str(h.config_file), GEMHUB_STATE_DIR=str(h.state_dir))
    dest = h.workdir / "backup"
    started = time.monotonic()
    out = subprocess.run([str(VENV_BIN / "gemhub"), "admin", "backup", str(dest)], env=env,
                         capture_output=True, text=True, timeout=600)
    backup_s = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert pg.password not in out.stdout + out.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    assert {d["name"]: d["engine"] for d in manifest["databases"]} == {
        "jupyterhub": "postgresql", "quota": "postgresql", "data": "postgresql", "ssh": "postgresql",
        "images": "postgresql"}
    h.stop()
    shutil.rmtree(h.state_dir)  # the disaster: files and databases gone
    for name in dbs.values():
        pg.drop_database(name)
        pg.create_database(name)
    started = time.monotonic()
    out = subprocess.run([str(VENV_BIN / "gemhub"), "admin", "restore", str(dest)], env=env,
                         capture_output=True, text=True, timeout=600)
    restore_s = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    h.start(timeout=180)
    check(h, made)
    figures = {"engine": "postgresql", "backup_s": round(backup_s, 2), "restore_s": round(restore_s, 2)}
    (artifacts / "ops-drill-postgres.json").write_text(json.dumps(figures))
    print("drill (postgresql):", figures)
