"""HTTP adapters of the ssh service: the key/password page and its JSON API (thin).

Credentials calls (database work, and bcrypt, which is slow on purpose) run in the
database's worker threads (``self.db``), never on the event loop the SSH gateway shares.
"""

from __future__ import annotations

import datetime

from gemhub.services.common.errors import BadRequest
from gemhub.services.common.handlers import APIHandler, PageHandler

from .connection import connection_details
from .credentials import Credentials, as_utc
from .models import PublicKey


def iso(value: datetime.datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def key_json(key: PublicKey) -> dict:
    return {"id": key.id, "name": key.name, "algorithm": key.algorithm, "fingerprint": key.fingerprint,
            "public_key": key.public_key, "created": iso(key.created), "last_used": iso(key.last_used)}


def status_json(status: dict) -> dict:
    return {k: iso(v) if isinstance(v, datetime.datetime) else v for k, v in status.items()}


class SSHMixin:
    @property
    def credentials(self) -> Credentials:
        return self.settings["credentials"]

    def db(self, fn, *args, **kw):
        return self.settings["database"].offload(fn, *args, **kw)

    def connection(self, user: str) -> dict:
        host = self.settings["ssh_public_host"] or self.request.host_name
        return connection_details(user, host, self.settings["ssh_port"])


class KeysAPI(SSHMixin, APIHandler):
    async def get(self):
        user = self.acting_user()
        items = [key_json(k) for k in await self.db(self.credentials.keys, user)]
        self.write_json(self.paginated(items, 0, len(items) or 1, len(items)))

    async def post(self):
        user = self.acting_user()
        body = self.json_body()
        key = await self.db(self.credentials.add_key, user, body.get("public_key"), body.get("name"))
        self.write_json(key_json(key), 201)


class KeyAPI(SSHMixin, APIHandler):
    async def delete(self, key_id):
        key_id = self.id_arg(key_id, "key id")
        await self.db(self.credentials.delete_key, self.acting_user(), key_id)
        self.set_status(204)
        self.finish()


class PasswordAPI(SSHMixin, APIHandler):
    async def put(self):
        user = self.acting_user()
        body = self.json_body()
        if "password" not in body:
            raise BadRequest('send {"password": "..."}')
        await self.db(self.credentials.set_password, user, body["password"])
        self.write_json(status_json(await self.db(self.credentials.status, user)))

    async def delete(self):
        user = self.acting_user()
        await self.db(self.credentials.clear_password, user)
        self.set_status(204)
        self.finish()


class StatusAPI(SSHMixin, APIHandler):
    async def get(self):
        user = self.acting_user()
        status = await self.db(self.credentials.status, user)
        self.write_json({**status_json(status), "connection": self.connection(user)})


class IndexPage(SSHMixin, PageHandler):
    async def get(self):
        if await self.login_or_user() is None:
            return
        user = self.acting_user()
        keys = await self.db(self.credentials.keys, user)
        status = await self.db(self.credentials.status, user)
        self.finish(self.render_page(
            "index.html", actor=user, keys=keys, status=status, conn=self.connection(user),
            max_failures=self.credentials.max_failures,
            lockout_minutes=int(self.credentials.lockout.total_seconds() // 60),
        ))
