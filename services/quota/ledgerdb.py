"""Running ledger transactions: the engine that locks, the writer thread, retries.

On SQLite every ledger transaction starts with ``BEGIN IMMEDIATE`` (the database's write
lock, taken before the first read, so two quota processes never decide on the same state);
on PostgreSQL the transaction locks the ``ledger_clock`` row (``SELECT ... FOR UPDATE``).
A lock wait past the database's timeout, a deadlock or a serialization failure is retried
with a fresh transaction. Transactions of one process run on one writer thread, off the
event loop, in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import sessionmaker

from gemhub.services.common.db import make_engine
from gemhub.services.common.errors import ServiceError, Unavailable

from .ledger import Ledger, LedgerCache, StopRequest
from .ledger_config import LedgerConfig

log = logging.getLogger("gemhub.quota.ledger")
T = TypeVar("T")
RETRIES = 20
# PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, lock not available
_PG_RETRY = {"40001", "40P01", "55P03"}


def ledger_engine(url: str) -> Engine:
    """An engine whose transactions take the database's write lock first (SQLite)."""
    engine = make_engine(url)
    if make_url(url).get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _driver_autocommit(dbapi_conn, _record):
            # pysqlite would otherwise BEGIN (deferred) on its own before the first write
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _retryable(e: Exception) -> bool:
    if isinstance(e, OperationalError) and "locked" in str(e.orig).lower():
        return True
    code = getattr(getattr(e, "orig", None), "sqlstate", None) or getattr(getattr(e, "orig", None), "pgcode", None)
    return isinstance(e, DBAPIError) and code in _PG_RETRY


class LedgerRunner:
    """``await runner.run(fn, actor)`` runs ``fn(ledger)`` in one locked transaction."""

    def __init__(self, engine: Engine, config: LedgerConfig, audit_model: type):
        self.engine = engine
        self.config = config
        self.sessionmaker = sessionmaker(engine, expire_on_commit=False, info={"audit_model": audit_model})
        self.cache = LedgerCache()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self.on_stops: Callable[[list[StopRequest]], Any] | None = None

    def run_sync(self, fn: Callable[[Ledger], T], actor: str = "") -> tuple[T, list[StopRequest]]:
        delay = 0.01
        for attempt in range(RETRIES):
            with self.sessionmaker() as session:
                ledger = Ledger(session, self.config, self.cache, actor)
                try:
                    ledger.lock()
                    result = fn(ledger)
                    ledger.commit()
                    return result, ledger.stops
                except ServiceError:
                    session.rollback()
                    self.cache.reset(None)
                    raise
                except DBAPIError as e:
                    session.rollback()
                    self.cache.reset(None)
                    if not _retryable(e) or attempt == RETRIES - 1:
                        if _retryable(e):
                            raise Unavailable("the ledger is busy; try again") from None
                        raise
                    log.info("ledger transaction retried (%s)", type(e.orig).__name__ if e.orig else e)
                except BaseException:
                    session.rollback()
                    self.cache.reset(None)
                    raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
        raise Unavailable("the ledger is busy; try again")

    async def run(self, fn: Callable[[Ledger], T], actor: str = "") -> T:
        loop = asyncio.get_running_loop()
        result, stops = await loop.run_in_executor(self.executor, self.run_sync, fn, actor)
        if stops and self.on_stops is not None:
            self.on_stops(stops)
        return result

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.engine.dispose()
