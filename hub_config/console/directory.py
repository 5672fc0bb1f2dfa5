"""The hub's own records as the admin console reads them: users, their servers, their
lock state, and stopping a server (a thin adapter over the console handler's JupyterHub
database session, users cache and ``stop_single_user``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

from jupyterhub import orm

from gemhub.hub_config.console.tabs import ConsoleError
from gemhub.spawner.summary import AcceleratorLabels, ServerSummary, status_of, summarize


@dataclass(frozen=True)
class UserRow:
    name: str
    admin: bool
    created: dt.datetime | None
    last_activity: dt.datetime | None
    login_locked_seconds: int        # 0: not locked (GemAuthenticator's lockout)
    awaiting_approval: bool          # a native account an admin has not authorized yet


def like_pattern(text: str) -> str:
    """``%text%`` for SQL LIKE with ``\\`` escaping: the admin's % and _ are characters."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class HubDirectory:
    def __init__(self, handler: Any, labels: AcceleratorLabels):
        self.handler = handler
        self.db = handler.db
        self.labels = labels

    # -- users -------------------------------------------------------------------------
    def users(self, search: str, offset: int, limit: int) -> tuple[list[UserRow], int]:
        q = self.db.query(orm.User)
        if search:
            q = q.filter(orm.User.name.ilike(like_pattern(search), escape="\\"))
        total = q.count()
        rows = q.order_by(orm.User.name).offset(offset).limit(limit).all()
        return [self._user_row(u) for u in rows], total

    def _user_row(self, u: orm.User) -> UserRow:
        auth = self.handler.authenticator
        remaining = getattr(auth, "lockout_remaining", None)
        locked = int(remaining(u.name)) if callable(remaining) else 0
        info = auth.get_user(u.name) if callable(getattr(auth, "get_user", None)) else None
        return UserRow(name=u.name, admin=bool(u.admin), created=u.created, last_activity=u.last_activity,
                       login_locked_seconds=locked,
                       awaiting_approval=info is not None and not getattr(info, "is_authorized", True))

    # -- servers -----------------------------------------------------------------------
    def servers(self, users: Iterable[str] | None = None) -> list[ServerSummary]:
        """Every running server (of ``users`` only, when given), users by name, the default
        server first."""
        q = self.db.query(orm.Spawner).join(orm.User).filter(orm.Spawner.server_id.isnot(None))
        if users is not None:
            q = q.filter(orm.User.name.in_(list(users)))
        out = [self._summary(s) for s in q.all()]
        return sorted(out, key=lambda s: (s.user, s.name))

    def _summary(self, s: orm.Spawner) -> ServerSummary:
        wrapper = self.handler.users[s.user].spawners.get(s.name)
        status = status_of(wrapper.active, wrapper.ready, wrapper.pending) if wrapper is not None else "running"
        return summarize(s.user.name, s.name, status=status, state=s.state, user_options=s.user_options,
                         started=s.started, labels=self.labels)

    async def stop_server(self, user_name: str, server: str) -> None:
        """Stop a user's server the way the hub's own API does (proxy route, spawner, state)."""
        orm_user = orm.User.find(self.db, user_name) if user_name else None
        if orm_user is None:
            raise ConsoleError(404, f"there is no user {user_name[:60]!r}")
        user = self.handler.users[orm_user]
        spawner = user.spawners.get(server)
        label = f"{user_name}/{server}" if server else f"the default server of {user_name}"
        if spawner is None or not spawner.active:
            raise ConsoleError(404, f"{label} is not running")
        if spawner.pending:
            raise ConsoleError(409, f"{label} is busy ({spawner.pending}); try again in a moment")
        self.handler.log.info("%s stops %s from the admin console", self.handler.current_user.name, label)
        await self.handler.stop_single_user(user, server)
