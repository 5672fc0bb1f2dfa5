"""SQLAlchemy engine/session factory and programmatic Alembic migrations.

SQLite (the default, a file under the state directory) runs with WAL and foreign keys;
PostgreSQL is used by URL. A PostgreSQL engine survives a database restart: pooled
connections are checked before use (``pool_pre_ping``) and a new connection waits for the
server to come back (:func:`wait_for_database`) instead of failing at once. The hub's own
engine gets the same through the SQLAlchemy plugin ``gemhub_db`` (:class:`ResiliencePlugin`,
named in ``JupyterHub.db_kwargs``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

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
    connections wait for a restarting server. The hub uses it through
    ``JupyterHub.db_kwargs``, since JupyterHub creates its engine itself."""

    def update_url(self, url):
        return url  # the plugin takes nothing out of the URL

    def engine_created(self, engine: Engine) -> None:
        if engine.dialect.name != "sqlite":
            wait_for_database(engine)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True)
        wait_for_database(engine)
        return engine
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


def survive_restarts(target: Session | sessionmaker) -> None:
    """Make a session (or every session of a factory) run a read again when the database
    restarted under it (:func:`_run_again_on_disconnect`)."""
    event.listen(target, "after_flush", _wrote)
    event.listen(target, "after_transaction_end", _ended)
    event.listen(target, "do_orm_execute", _run_again_on_disconnect)


def make_sessionmaker(engine: Engine, audit_model: type | None = None) -> sessionmaker:
    """Sessions bound to ``engine``; ``audit_model`` is the service's AuditEvent class."""
    sessions = sessionmaker(engine, expire_on_commit=False, info={"audit_model": audit_model})
    if engine.dialect.name != "sqlite":
        survive_restarts(sessions)
    return sessions


def run_migrations(engine: Engine, migrations_dir: str | os.PathLike) -> None:
    """Upgrade the database to the newest revision found in ``migrations_dir``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
