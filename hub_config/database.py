"""The hub's own database through a PostgreSQL restart.

JupyterHub keeps one SQLAlchemy session for the whole hub, and a request that only reads
leaves it in a transaction holding its pooled connection until some later commit. When the
server restarts, the next request then runs on that dead connection and fails (a valid token
reads as "Missing or invalid credentials"). What fixes that:

- :func:`db_kwargs` (``JupyterHub.db_kwargs``): connections are checked on checkout
  (``pool_pre_ping``) and a new one waits for the restarting server (the ``gemhub_db``
  SQLAlchemy plugin, :mod:`gemhub.services.common.db`);
- :func:`log_request` (``tornado_settings["log_function"]``, called as every request ends):
  a transaction that only read is ended, so the connection goes back to the pool and is
  checked before its next use. One that wrote is left to the code that will commit it.
  It also gives the session :func:`~gemhub.services.common.db.survive_restarts` (a read
  that finds its connection dead runs again on a new one) the first time it sees it.
"""

from __future__ import annotations

import logging
from typing import Any

from jupyterhub.log import log_request as jupyterhub_log_request
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from gemhub.services.common.db import has_written, survive_restarts

log = logging.getLogger(__name__)

TRACKED = "gemhub_survives_restarts"


def db_kwargs(url: str) -> dict[str, Any]:
    """``JupyterHub.db_kwargs`` for the hub's database URL (SQLite: WAL mode)."""
    if make_url(url).get_backend_name() == "sqlite":
        return {"plugins": ["gemhub_db"]}
    return {"pool_pre_ping": True, "plugins": ["gemhub_db"]}


def release_read_transaction(session) -> None:
    """End ``session``'s transaction if it only read (nothing pending, nothing flushed)."""
    if session is None:
        return
    if not session.info.get(TRACKED):
        survive_restarts(session)
        session.info[TRACKED] = True
    if not session.in_transaction() or has_written(session):
        return
    try:
        session.commit()  # nothing to write: returns the connection (expire_on_commit is off)
    except SQLAlchemyError as e:
        log.warning("ending the hub's read transaction: %s", e)
        try:
            session.rollback()
        except SQLAlchemyError:
            pass  # the connection is gone (invalidated); the next checkout makes a new one


def log_request(handler) -> None:
    """JupyterHub's request log line, then :func:`release_read_transaction`."""
    jupyterhub_log_request(handler)
    settings = getattr(handler, "settings", None) or {}
    release_read_transaction(settings.get("db"))
