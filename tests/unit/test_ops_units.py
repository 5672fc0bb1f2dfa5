"""Issue 16's pure and local pieces: account concurrency, process claims and failure notes,
the one line `make run` prints, database-restart handling, backup discovery, bounded caches."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import Column, Integer, create_engine, event, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, declarative_base

from gemhub.hub_config import backup, configurer, database, dumps, run
from gemhub.services.common import caches, db, lifecycle
from gemhub.spawner.local import accounts


# -- accounts: per name, in parallel --------------------------------------------------------------
class FakeSystem:
    """pwd/grp and the account commands, in memory, recording how many run at once."""

    def __init__(self):
        self.users: dict[str, int] = {}
        self.groups: dict[str, set[str]] = {}
        self.commands: list[tuple[str, ...]] = []
        self.running = 0
        self.most = 0

    async def run(self, *argv):
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.05)
        self.commands.append(argv)
        if argv[0] == "useradd":
            name = argv[-1]
            self.users[name] = 2000 + len(self.users)
            if "--groups" in argv:
                for g in argv[argv.index("--groups") + 1].split(","):
                    self.groups[g].add(name)
        elif argv[0] == "groupadd":
            self.groups[argv[-1]] = set()
        elif argv[0] == "usermod" and "--append" in argv:
            self.groups[argv[-2]].add(argv[-1])
        self.running -= 1

    def getpwnam(self, name):
        if name not in self.users:
            raise KeyError(name)
        return SimpleNamespace(pw_name=name, pw_uid=self.users[name], pw_gid=self.users[name], pw_dir=self.home[name])

    def getgrnam(self, name):
        if name not in self.groups:
            raise KeyError(name)
        return SimpleNamespace(gr_name=name, gr_gid=3000 + sorted(self.groups).index(name),
                               gr_mem=sorted(self.groups[name]))


@pytest.fixture
def system(monkeypatch, tmp_path):
    fake = FakeSystem()
    fake.home = {}
    real_ensure_user = accounts.Accounts.ensure_user

    async def ensure_user(self, name, home, legacy=None, groups=()):
        fake.home[name] = accounts.sandbox_home(name)
        return await real_ensure_user(self, name, home, legacy=legacy, groups=groups)

    monkeypatch.setattr(accounts, "_run", fake.run)
    monkeypatch.setattr(accounts.pwd, "getpwnam", fake.getpwnam)
    monkeypatch.setattr(accounts.grp, "getgrnam", fake.getgrnam)
    monkeypatch.setattr(accounts.os, "chown", lambda *a, **k: None)
    monkeypatch.setattr(accounts.Accounts, "ensure_user", ensure_user)
    return fake


def test_new_users_are_set_up_in_parallel_and_once_each(system, tmp_path):
    acc = accounts.Accounts()

    async def first_spawn(i):
        await acc.ensure_group(f"gemws-{i}")
        await acc.ensure_user(f"gem-u{i}", tmp_path / f"u{i}", groups=(f"gemws-{i}",))
        return await acc.ensure_member(f"gemws-{i}", f"gem-u{i}")

    async def burst():
        # 12 users, and the first user's spawn asked twice at once (a double click)
        return await asyncio.gather(*[first_spawn(i) for i in range(12)], first_spawn(0))

    asyncio.run(burst())
    assert system.most == accounts.MAX_COMMANDS  # in parallel, within the bound
    useradds = [c[-1] for c in system.commands if c[0] == "useradd"]
    assert sorted(useradds) == sorted(f"gem-u{i}" for i in range(12))  # once each
    # no subordinate uid/gid ranges for environment accounts
    assert all({"SUB_UID_COUNT=0", "SUB_GID_COUNT=0"} <= set(c) for c in system.commands if c[0] == "useradd")
    # the new account joined its workspace group in the useradd itself: two commands per user
    assert len(system.commands) == 24 and not any(c[0] == "usermod" for c in system.commands)
    assert all(f"gem-u{i}" in system.groups[f"gemws-{i}"] for i in range(12))
    assert len(acc._names) == 0  # no lock left behind


def test_a_workspace_group_deleted_under_a_new_account_is_made_again(system, tmp_path):
    acc = accounts.Accounts()
    real_run = system.run

    async def useradd_finds_no_group(*argv):
        if argv[0] == "useradd" and "gemws-9" not in system.groups:
            raise accounts.AccountError("useradd: group 'gemws-9' does not exist")
        await real_run(*argv)

    async def first_spawn():
        await acc.ensure_group("gemws-9")
        del system.groups["gemws-9"]  # the workspace was removed meanwhile
        await acc.ensure_user("gem-v", tmp_path / "v", groups=("gemws-9",))

    accounts._run = useradd_finds_no_group  # restored by the fixture's monkeypatch
    asyncio.run(first_spawn())
    assert "gem-v" in system.users and "gem-v" in system.groups["gemws-9"]


def test_a_command_that_finds_the_files_locked_runs_again(monkeypatch):
    calls = []

    class Proc:
        def __init__(self, rc, out):
            self.returncode, self.out = rc, out

        async def communicate(self):
            return self.out, b""

    async def fake_exec(*argv, **kw):
        calls.append(argv)
        return Proc(1, b"useradd: cannot lock /etc/passwd; try again later.") if len(calls) < 3 else Proc(0, b"")

    monkeypatch.setattr(accounts.asyncio, "create_subprocess_exec", fake_exec)
    real_sleep = asyncio.sleep
    monkeypatch.setattr(accounts.asyncio, "sleep", lambda s: real_sleep(0))
    asyncio.run(accounts._run("useradd", "x"))
    assert len(calls) == 3

    async def refused(*argv, **kw):
        return Proc(9, b"useradd: user 'x' already exists")

    monkeypatch.setattr(accounts.asyncio, "create_subprocess_exec", refused)
    with pytest.raises(accounts.AccountError, match="already exists"):
        asyncio.run(accounts._run("useradd", "x"))


# -- lifecycle: one at a time, failures said in one line -------------------------------------------
def test_claim_stops_a_predecessor_and_holds_the_name(tmp_path):
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from gemhub.services.common import lifecycle; "
        f"c = lifecycle.claim({str(tmp_path)!r}, 'quota', 'gemhub-test-marker'); "
        f"open({str(ready)!r}, 'w').write('x'); time.sleep(60)"), "gemhub-test-marker"])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lifecycle.is_claimed(tmp_path, "quota")
        assert lifecycle.claimed_names(tmp_path) == ["quota"]
        claim = lifecycle.claim(tmp_path, "quota", "gemhub-test-marker", stop_wait=10)
        assert holder.wait(10) == -signal.SIGTERM  # the old one was asked to stop
        assert (tmp_path / "run" / "quota.lock").read_text().strip() == str(os.getpid())
        claim.release()
        assert not lifecycle.is_claimed(tmp_path, "quota")
    finally:
        holder.kill()
        holder.wait()


def test_a_pid_that_is_not_a_predecessor_is_never_signalled(tmp_path):
    (tmp_path / "run").mkdir()
    # a stale lock file naming some live process (this one) that holds no lock
    (tmp_path / "run" / "data.lock").write_text(f"{os.getppid()}\n")
    claim = lifecycle.claim(tmp_path, "data", "gemhub.services.")
    claim.release()


def test_failure_notes_and_the_line_make_run_prints(tmp_path):
    lifecycle.report_failure(tmp_path, "ssh", "port 2222 is in use; set GEMHUB_SSH_PORT or services.ssh.port\nmore")
    assert lifecycle.failures(tmp_path) == {"ssh": "port 2222 is in use; set GEMHUB_SSH_PORT or services.ssh.port"}
    assert oct((tmp_path / "run" / "ssh.failed").stat().st_mode & 0o777) == "0o600"
    cfg = configurer.merge_platform({}, {})
    inputs = configurer.Inputs(repo_dir="/r", state_dir=str(tmp_path), python="/p", hub_port=1, proxy_api_port=2,
                               service_ports={"quota": 3}, service_tokens={"quota": "t"}, admin_password="pw")
    assert run.diagnose(cfg, inputs, 1) == "ssh: port 2222 is in use; set GEMHUB_SSH_PORT or services.ssh.port"
    lifecycle.clear_failures(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg["hub"]["port"] = taken.getsockname()[1]
        line = run.diagnose(cfg, inputs, 1)
    assert line == f"proxy: port {cfg['hub']['port']} is in use; set GEMHUB_PORT or hub.port"
    assert run.ready_urls(cfg, inputs) == ["http://127.0.0.1:1/hub/health",
                                           "http://127.0.0.1:3/services/quota/health",
                                           f"http://127.0.0.1:{cfg['hub']['port']}/services/quota/health"]


def test_bind_errors_read_as_sentences():
    import errno

    assert lifecycle.describe_bind_error(OSError(errno.EADDRINUSE, "x"), "127.0.0.1", 2222) == "port 2222 is in use"
    assert "no permission" in lifecycle.describe_bind_error(OSError(errno.EACCES, "x"), "0.0.0.0", 22)
    assert "no such address" in lifecycle.describe_bind_error(OSError(errno.EADDRNOTAVAIL, "x"), "10.9.9.9", 22)


def test_secrets_come_from_the_environment_or_a_file(tmp_path):
    from gemhub.services.common.app import secret_from_env

    f = tmp_path / "url"
    f.write_text("postgresql://u:pw@h/db\n")
    assert secret_from_env("GEMHUB_DATABASE_URL", {"GEMHUB_DATABASE_URL": "sqlite:///x"}) == "sqlite:///x"
    assert secret_from_env("GEMHUB_DATABASE_URL", {"GEMHUB_DATABASE_URL_FILE": str(f)}) == "postgresql://u:pw@h/db"
    assert secret_from_env("GEMHUB_DATABASE_URL", {}) == ""


# -- database restarts -----------------------------------------------------------------------------
Base = declarative_base()


class Row(Base):
    __tablename__ = "rows"
    id = Column(Integer, primary_key=True)


def _lost_connection() -> OperationalError:
    e = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    e.connection_invalidated = True
    return e


def test_a_read_whose_connection_died_runs_again_but_not_after_a_write():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    breaks = {"n": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _die(conn, cursor, statement, *args):
        if breaks["n"] and statement.lstrip().upper().startswith("SELECT"):
            breaks["n"] -= 1
            raise _lost_connection()

    session = Session(engine)
    db.survive_restarts(session)
    breaks["n"] = 1
    assert session.execute(select(Row)).all() == []  # ran again on a new connection
    session.add(Row(id=1))
    session.flush()
    breaks["n"] = 1
    with pytest.raises(OperationalError):  # a rollback would lose the write: not run again
        session.execute(select(Row))
    session.rollback()
    assert not db.has_written(session)


def test_closing_a_session_whose_connection_died_is_not_an_error():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = db.RestartTolerantSession(engine)
    session.execute(select(Row)).all()

    @event.listens_for(engine, "rollback")
    def _dead(conn):
        raise _lost_connection()

    session.close()  # the read's result stands; the rollback had nothing to undo
    broken = db.RestartTolerantSession(engine)
    broken.execute(select(Row)).all()
    event.remove(engine, "rollback", _dead)

    @event.listens_for(engine, "rollback")
    def _other(conn):
        raise OperationalError("ROLLBACK", {}, Exception("disk I/O error"))

    with pytest.raises(OperationalError):  # any other failure still shows
        broken.close()


def test_connect_errors_that_are_worth_waiting_for():
    assert db.is_transient(Exception("connection refused"))  # no SQLSTATE: the server is not there
    assert db.is_transient(SimpleNamespace(sqlstate="57P03"))  # starting up
    assert not db.is_transient(SimpleNamespace(sqlstate="28P01"))  # wrong password
    assert not db.is_transient(SimpleNamespace(sqlstate="3D000"))  # no such database


def test_the_hubs_sqlite_database_runs_in_wal_mode(tmp_path):
    """One fsync per commit instead of the rollback journal's several, as durable."""
    url = f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    engine = create_engine(url, **database.db_kwargs(url))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL: a commit is on disk
    engine.dispose()


def test_the_hub_ends_read_only_transactions_after_each_request():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = Session(engine, expire_on_commit=False)
    session.execute(text("SELECT 1"))
    assert session.in_transaction()
    database.release_read_transaction(session)
    assert not session.in_transaction()
    session.add(Row(id=5))
    session.flush()
    database.release_read_transaction(session)  # a flushed write is left to its owner
    assert session.in_transaction()
    session.commit()
    assert database.db_kwargs("sqlite:///x.sqlite") == {"plugins": ["gemhub_db"]}
    assert database.db_kwargs("postgresql://u:p@h/d")["plugins"] == ["gemhub_db"]


# -- backup: what there is ----------------------------------------------------------------------------
def test_backup_finds_every_database_and_keeps_passwords_off_argv(tmp_path):
    (tmp_path / "db").mkdir()
    for name in ("jupyterhub", "quota", "billing"):
        (tmp_path / "db" / f"{name}.sqlite").write_bytes(b"")
    cfg = configurer.merge_platform({"services": {"data": {"database_url": "postgresql://u:s3cret@h:5432/data"}}}, {})
    found = {d.name: d.engine for d in backup.databases(cfg, tmp_path)}
    # ssh never ran here (no file); billing is a service added later, found by its file
    assert found == {"jupyterhub": "sqlite", "quota": "sqlite", "data": "postgresql", "billing": "sqlite"}
    uri, env = dumps.libpq("postgresql+psycopg://u:s3cret@h:5432/data?sslmode=require")
    assert "s3cret" not in uri and env == {"PGPASSWORD": "s3cret"} and uri.startswith("postgresql://u@h:5432/data")


def test_restore_refuses_a_state_directory_in_use_or_not_empty(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("restore needs root")
    src = tmp_path / "backup"
    src.mkdir()
    (src / backup.MANIFEST).write_text('{"format": 1, "databases": [], "files": {"archive": "state.tar"}}')
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore({}, full, src, say=lambda _: None)
    with pytest.raises(backup.BackupError, match="no manifest.json"):
        backup.restore({}, tmp_path / "fresh", tmp_path / "nothing", say=lambda _: None)


# -- bounded caches -------------------------------------------------------------------------------------
def test_per_user_caches_are_bounded():
    seen = caches.SeenNames(maxsize=3)
    for name in "abcde":
        seen.add(name)
    assert len(seen) == 3 and "e" in seen and "a" not in seen
    ttl = caches.per_user_ttl(60, maxsize=2)
    for name in "xyz":
        ttl[name] = (0, [])
    assert len(ttl) == 2


def test_a_backup_leaves_out_mounts_inside_the_state_directory():
    """Image versions' root filesystems are mounts of the image store (itself backed up);
    archiving them too would store every image twice."""
    from pathlib import Path

    from gemhub.hub_config.backup import _mounted_inside

    points = {"/", "/srv/state", "/srv/state/images/rootfs/7", "/srv/state/workspaces/2/images/9",
              "/srv/state/images/storage/overlay/abc/merged", "/srv/other", "/srv/state-2/x",
              "/srv/state/odd*[name]"}
    assert _mounted_inside(Path("/srv/state"), points) == [
        "./images/rootfs/7", "./images/storage/overlay/abc/merged", "./odd[*][[]name[]]",
        "./workspaces/2/images/9"]
