"""The services' database: engine, short sessions run off the event loop, migrations.

SQLite (the default, a file under the state directory) runs with WAL and foreign keys;
PostgreSQL is used by URL.

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
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

T = TypeVar("T")

# Worker threads of a service's database pool (and connections kept open for them).
DB_WORKERS = 8
# Connections beyond the workers' own: background threads (storage scans, publishing).
DB_OVERFLOW = 8


def make_engine(url: str, workers: int = DB_WORKERS) -> Engine:
    parsed = make_url(url)
    pool = {"pool_size": workers, "max_overflow": DB_OVERFLOW}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
    else:
        engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        if parsed.database and parsed.database != ":memory:":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def make_sessionmaker(engine: Engine, audit_model: type | None = None) -> sessionmaker:
    """Sessions bound to ``engine``; ``audit_model`` is the service's AuditEvent class."""
    return sessionmaker(engine, expire_on_commit=False, info={"audit_model": audit_model})


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
