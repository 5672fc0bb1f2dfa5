"""The services' database: engine, short sessions run off the event loop, migrations.

SQLite (the default, a file under the state directory) runs with WAL and foreign keys;
PostgreSQL is used by URL. A PostgreSQL engine survives a database restart: pooled
connections are checked before use (``pool_pre_ping``), a new connection waits for the
server to come back (:func:`wait_for_database`) instead of failing at once, and a read whose
connection dies under it runs again on a new one (:func:`survive_restarts`). The hub's own
engine gets the first two through the SQLAlchemy plugin ``gemhub_db`` (:class:`ResiliencePlugin`,
named in ``JupyterHub.db_kwargs``).

How handlers use the database (every service, and every new handler):

- never hold a session across an ``await``: a handler that waits on the hub or another
  service while holding a pooled connection lets a burst of such requests take every
  connection, and then the next checkout blocks the event loop itself;
- never run a query on the event loop: a query is blocking I/O (SQLite's busy wait of up
  to 30 s included).

So each piece of database work is a plain function ``fn(session, ...)`` that opens
nothing, commits what it changes, and returns plain data (JSON-ready dicts, ids), run with
``await database.run(fn, ...)`` in the database's own thread pool, in a session that is
closed before the await returns. We chose this over async SQLAlchemy (aiosqlite/asyncpg)
because the domain modules (workspaces.py, catalog.py, credentials.py) stay plain
synchronous Python that unit tests call directly, both backends keep their standard
drivers (sqlite3, psycopg), and a session can never outlive the function that opened it.
The pool has a connection for every worker thread, so a worker never waits on the pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import CreateEnginePlugin, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

log = logging.getLogger(__name__)

#: seconds a new connection waits for the database (a restart takes a few seconds)
CONNECT_WAIT = 30.0
# SQLSTATEs of a server that is starting, stopping or restarting: worth waiting for.
# Anything else with a SQLSTATE (a wrong password, a missing database) fails at once.
_TRANSIENT_SQLSTATES = {"57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"}


def is_transient(error: BaseException) -> bool:
    """Whether a connect error means "the server is not there right now" (no SQLSTATE:
    refused or reset; or one of the start/stop states) rather than a refusal."""
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate is None or sqlstate in _TRANSIENT_SQLSTATES


def wait_for_database(engine: Engine, wait: float = CONNECT_WAIT) -> None:
    """Make every new DBAPI connection of ``engine`` retry for up to ``wait`` seconds while
    the server is unreachable (restarting), so a restart delays requests instead of failing
    them. Refusals (authentication, missing database) are raised at once."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, _conn_rec, cargs, cparams):
        dbapi = dialect.loaded_dbapi
        deadline = time.monotonic() + wait
        delay = 0.1
        while True:
            try:
                return dbapi.connect(*cargs, **cparams)
            except dbapi.OperationalError as e:
                if not is_transient(e) or time.monotonic() + delay > deadline:
                    raise
                if delay == 0.1:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    log.warning("database unavailable (%s); waiting up to %.0fs for it", first, wait)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)


class ResiliencePlugin(CreateEnginePlugin):
    """``create_engine(url, plugins=["gemhub_db"])`` (entry point ``sqlalchemy.plugins``):
    connections wait for a restarting server; a SQLite file is put in WAL mode. The services
    use it through :func:`make_engine`, the hub through ``JupyterHub.db_kwargs``, since
    JupyterHub creates its engine itself."""

    def update_url(self, url):
        return url  # the plugin takes nothing out of the URL

    def engine_created(self, engine: Engine) -> None:
        if engine.dialect.name != "sqlite":
            wait_for_database(engine)
            return
        database = engine.url.database
        if database and database != ":memory:":
            event.listen(engine, "connect", _sqlite_wal)


def _sqlite_wal(dbapi_conn, _record) -> None:
    """A database file in WAL mode: a commit is one fsync of the log instead of the rollback
    journal's several (as durable: ``synchronous`` stays FULL), and readers never wait for
    a writer. Under a burst of spawns every commit of the hub's waits on the disk."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


T = TypeVar("T")

# Worker threads of a service's database pool (and connections kept open for them).
DB_WORKERS = 8
# Connections beyond the workers' own: background threads (storage scans, publishing).
DB_OVERFLOW = 8


def make_engine(url: str, workers: int = DB_WORKERS) -> Engine:
    parsed = make_url(url)
    pool = {"pool_size": workers, "max_overflow": DB_OVERFLOW}
    # ResiliencePlugin, as for the hub: a restarting server is waited for, a SQLite file is in WAL mode
    plugins = ["gemhub_db"]
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, plugins=plugins, **pool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, plugins=plugins, **pool)
    else:
        engine = create_engine(url, connect_args={"timeout": 30}, plugins=plugins)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def is_disconnect(error: BaseException) -> bool:
    """A database error raised because the connection was lost (the server restarted
    while it was in use): the transaction was rolled back and may be run again."""
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


WROTE = "gemhub_wrote"  # Session.info key: the open transaction has written something


def _wrote(session: Session, *_args) -> None:
    session.info[WROTE] = True


def _ended(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed or rolled back
        session.info.pop(WROTE, None)


def has_written(session: Session) -> bool:
    """Whether ``session``'s transaction holds writes (flushed or pending) that a rollback
    would lose."""
    return bool(session.info.get(WROTE) or session.new or session.dirty or session.deleted)


def _run_again_on_disconnect(state: ORMExecuteState):
    """``do_orm_execute``: a statement that finds its connection dead (the server restarted
    under it) runs once more in a new transaction, on a checked connection, provided that
    the transaction had written nothing (so the rollback loses nothing). A ping cannot
    cover this: the server may end the connection just after answering it."""
    session = state.session
    try:
        result = state.invoke_statement()
    except DBAPIError as e:
        if not is_disconnect(e) or has_written(session):
            raise
        log.warning("database connection lost; running the statement again on a new one")
        session.rollback()
        result = state.invoke_statement()
    if state.is_insert or state.is_update or state.is_delete:
        _wrote(session)
    return result


class RestartTolerantSession(Session):
    """A session whose ``close()`` survives a connection the server ended after the work
    was done (a restart between the last query and the end of the ``with`` block): the
    rollback that close sends then fails, though nothing is left to roll back; the work's
    result must not be turned into an error by it."""

    def close(self) -> None:
        try:
            super().close()
        except DBAPIError as e:
            if not is_disconnect(e):
                raise
            log.info("database connection lost while closing a session (nothing to roll back)")


def survive_restarts(target: Session | sessionmaker) -> None:
    """Make a session (or every session of a factory) run a read again when the database
    restarted under it (:func:`_run_again_on_disconnect`)."""
    event.listen(target, "after_flush", _wrote)
    event.listen(target, "after_transaction_end", _ended)
    event.listen(target, "do_orm_execute", _run_again_on_disconnect)


def make_sessionmaker(engine: Engine, audit_model: type | None = None) -> sessionmaker:
    """Sessions bound to ``engine``; ``audit_model`` is the service's AuditEvent class."""
    if engine.dialect.name == "sqlite":
        return sessionmaker(engine, expire_on_commit=False, info={"audit_model": audit_model})
    sessions = sessionmaker(engine, class_=RestartTolerantSession, expire_on_commit=False,
                            info={"audit_model": audit_model})
    survive_restarts(sessions)
    return sessions


class Database:
    """A service's sessions, run in a thread pool of their own (see the module docstring)."""

    def __init__(self, sessions: sessionmaker, workers: int = DB_WORKERS):
        self.sessions = sessions
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")

    def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(session, *args, **kw)`` in a new session, closed when it returns (blocking:
        for code already off the event loop)."""
        with self.sessions() as session:
            return fn(session, *args, **kw)

    async def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(session, *args, **kw)`` in a worker thread, in a session closed before this
        returns. Exceptions (service errors included) are raised here."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(self.call, fn, *args, **kw))

    async def offload(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(*args, **kw)``, a function that opens its own short sessions (e.g. the ssh
        service's Credentials), in the database's worker threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args, **kw))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def run_migrations(engine: Engine, migrations_dir: str | os.PathLike) -> None:
    """Upgrade the database to the newest revision found in ``migrations_dir``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


__all__ = ["Database", "make_engine", "make_sessionmaker", "run_migrations"]
