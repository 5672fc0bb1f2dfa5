"""Running ledger transactions: the engine that locks, the writer thread, retries.

On SQLite every ledger transaction starts with ``BEGIN IMMEDIATE`` (the database's write
lock, taken before the first read, so two quota processes never decide on the same state);
on PostgreSQL the transaction locks the ``ledger_clock`` row (``SELECT ... FOR UPDATE``).
A lock wait past the database's timeout, a deadlock or a serialization failure is retried
with a fresh transaction. Transactions of one process run on one writer thread, off the
event loop, in arrival order (:class:`LedgerRunner`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import random
import threading
import time
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
            # WAL with NORMAL: a commit survives any process crash without an fsync each;
            # only an OS crash can lose the last moments, which reconciliation repairs
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

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
    """``await runner.run(fn, actor)`` runs ``fn(ledger)`` in a locked ledger transaction.

    One writer thread runs them in arrival order. Changes that arrive while a transaction
    runs are taken together into the next one (group commit), each in its own savepoint: a
    refused change rolls back alone and the others commit, so a burst of admissions pays
    for one lock and one commit instead of one each.
    """

    def __init__(self, engine: Engine, config: LedgerConfig, audit_model: type, max_batch: int = 64):
        self.engine = engine
        self.config = config
        self.sessionmaker = sessionmaker(engine, expire_on_commit=False, info={"audit_model": audit_model})
        self.cache = LedgerCache()
        self.max_batch = max_batch
        self.on_stops: Callable[[list[StopRequest]], Any] | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="ledger-writer", daemon=True)
        self._thread.start()

    # -- callers -------------------------------------------------------------------------
    def submit(self, fn: Callable[[Ledger], T], actor: str = "") -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fn, actor, future))
        return future

    def run_sync(self, fn: Callable[[Ledger], T], actor: str = "") -> tuple[T, list[StopRequest]]:
        """From any thread but the writer: wait for the result (and the stops to deliver)."""
        return self.submit(fn, actor).result()

    async def run(self, fn: Callable[[Ledger], T], actor: str = "") -> T:
        result, stops = await asyncio.wrap_future(self.submit(fn, actor))
        if stops and self.on_stops is not None:
            self.on_stops(stops)
        return result

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)
        self.engine.dispose()

    # -- the writer thread -----------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                batch.append(more)
            batch = [j for j in batch if j[2].set_running_or_notify_cancel()]
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list) -> None:
        """Run ``batch`` in one transaction. A change refused before it wrote anything (the
        ledger refuses that way) fails alone; one that fails after writing rolls the
        transaction back, and the others run again without it."""
        delay = 0.01
        attempt = 0
        while batch:
            outcomes: list[tuple[bool, Any]] = []
            with self.sessionmaker() as session:
                flushes = [0]
                event.listen(session, "after_flush", lambda *_: flushes.__setitem__(0, flushes[0] + 1))
                ledger = Ledger(session, self.config, self.cache)
                try:
                    ledger.lock()
                    for i, (fn, actor, _) in enumerate(batch):
                        ledger.actor, ledger.stops = actor, []
                        recorded, flushed = len(ledger.events), flushes[0]
                        try:
                            result = fn(ledger)
                            session.flush()
                            outcomes.append((True, (result, ledger.stops)))
                        except Exception as e:
                            del ledger.events[recorded:]
                            self.cache.reset(ledger._version)
                            wrote = flushes[0] != flushed or session.new or session.dirty or session.deleted
                            if wrote or (isinstance(e, DBAPIError) and _retryable(e)):
                                raise _Redo(i, e) from e
                            outcomes.append((False, e))
                    ledger.commit()
                except _Redo as redo:
                    session.rollback()
                    self.cache.reset(None)
                    if isinstance(redo.error, DBAPIError) and _retryable(redo.error):
                        attempt += 1
                        if attempt < RETRIES:
                            log.info("ledger transaction retried (%s)", type(redo.error).__name__)
                            time.sleep(delay * (1 + random.random()))
                            delay = min(delay * 2, 1.0)
                            continue
                        redo.error = Unavailable("the ledger is busy; try again")
                    failed = batch.pop(redo.index)
                    _fail(failed[2], redo.error)
                    continue
                except DBAPIError as e:
                    session.rollback()
                    self.cache.reset(None)
                    attempt += 1
                    if _retryable(e) and attempt < RETRIES:
                        log.info("ledger transaction retried (%s)", type(e.orig).__name__ if e.orig else e)
                        time.sleep(delay * (1 + random.random()))
                        delay = min(delay * 2, 1.0)
                        continue
                    error = Unavailable("the ledger is busy; try again") if _retryable(e) else e
                    for _, _, future in batch:
                        _fail(future, error)
                    return
                except BaseException as e:
                    session.rollback()
                    self.cache.reset(None)
                    for _, _, future in batch:
                        _fail(future, e)
                    if not isinstance(e, Exception):
                        raise
                    return
            for (_, _, future), (ok, value) in zip(batch, outcomes):
                if ok:
                    future.set_result(value)
                else:
                    _fail(future, value)
            return


class _Redo(Exception):
    """A change failed after it wrote: roll back and run the batch again without it."""

    def __init__(self, index: int, error: Exception):
        super().__init__(str(error))
        self.index = index
        self.error = error


def _fail(future: concurrent.futures.Future, error: BaseException) -> None:
    if not isinstance(error, ServiceError):
        log.error("ledger change failed", exc_info=error)
    future.set_exception(error)
