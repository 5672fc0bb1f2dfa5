"""SQLAlchemy engine/session factory and programmatic Alembic migrations.

SQLite (the default, a file under the state directory) runs with WAL and foreign keys;
PostgreSQL is used by URL.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
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


def run_migrations(engine: Engine, migrations_dir: str | os.PathLike) -> None:
    """Upgrade the database to the newest revision found in ``migrations_dir``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
