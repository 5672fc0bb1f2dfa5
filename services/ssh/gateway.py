"""The SSH server: authentication against the key/password registry with lockout, and the
routing of sessions and ``ssh -L`` forwards into the login's environment.

``Gateway`` is shared by all connections (credentials, hub client, settings);
``GatewayServer`` is asyncssh's per-connection object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import asyncssh
import psutil

from gemhub.services.common.db import Database
from gemhub.services.common.errors import Unavailable
from gemhub.services.data.client import DataClient
from gemhub.spawner.local.record import RuntimeRecord, read_record, record_path

from .credentials import Credentials, password_matches
from .drafts import DraftTarget, draft_target, open_draft_session
from .hubclient import HubClient
from .keys import fingerprint_of
from .session import EnvironmentSession
from .target import (TargetError, Tools, check_record, command_argv, label, process_alive, session_env,
                     split_login)

LOOPBACK = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1", "ip6-localhost": "::1"}
# a listening address -> the loopback address that reaches exactly that listener
LISTEN_TO_CONNECT = {"127.0.0.1": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::1": "::1", "::": "::1",
                     "::ffff:127.0.0.1": "127.0.0.1"}
ACTIVITY_EVERY = 300.0
START_WAIT = 120.0


class Gateway:
    def __init__(self, *, credentials: Credentials, hub: HubClient, state_dir: str, hub_url: str,
                 start_stopped: bool, log: logging.Logger, database: Database, tools: Tools | None = None,
                 data: DataClient | None = None, draft_recheck_seconds: float = 15.0):
        self.credentials = credentials
        self.database = database
        self.hub = hub
        self.data = data  # the data service, for SFTP into drafts (None: not offered)
        self.draft_recheck_seconds = draft_recheck_seconds
        self.state_dir = state_dir
        self.hub_url = hub_url.rstrip("/") + "/"
        self.start_stopped = start_stopped
        self.log = log
        self.tools = tools or Tools.find()
        self.as_root = os.geteuid() == 0
        self._open: dict[tuple[str, str], int] = {}
        self._activity_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    def in_background(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    def db(self, fn, *args, **kw):
        """Await a :class:`Credentials` call: it runs in the database's threads, never on the
        event loop that serves every other connection."""
        return self.database.offload(fn, *args, **kw)

    def record(self, user: str, action: str, **detail) -> None:
        """An audit event, written in the background (callers from asyncssh's sync callbacks)."""
        self.in_background(self.db(self.credentials.record_event, user, action, **detail))

    # -- the environment of a login -------------------------------------------------------
    async def environment(self, user: str, server: str, notify=None) -> RuntimeRecord:
        """The running environment's record, starting it first when configured to."""
        try:
            model = await self.hub.server(user, server)
        except Unavailable as e:
            raise TargetError(f"gemhub: the hub cannot be reached right now ({e.message}); try again") from None
        if model is None or not model.get("ready"):
            if not self.start_stopped or (model is not None and model.get("pending") == "stop"):
                what = f"your server {server!r}" if server else "your environment"
                raise TargetError(f"gemhub: {what} is not running; start it at {self.hub_url}hub/home"
                                  " and connect again")
            if notify is not None:
                notify(f"gemhub: starting {'server ' + repr(server) if server else 'your environment'}...\r\n")
            await self._start(user, server)
        record = read_record(self.state_dir, user, server)
        if record is None or not process_alive(record):
            raise TargetError(f"gemhub: {label(user, server)} is running but not on this machine's local"
                              " runtime, or has just stopped; try again in a moment")
        check_record(record, record_path(self.state_dir, user, server))
        return record

    async def _start(self, user: str, server: str) -> None:
        try:
            await self.hub.start(user, server)
            deadline = time.monotonic() + START_WAIT
            while time.monotonic() < deadline:
                model = await self.hub.server(user, server)
                if model and model.get("ready"):
                    return
                if model is None or not model.get("pending"):
                    break
                await asyncio.sleep(0.5)
        except Unavailable as e:
            raise TargetError(f"gemhub: could not start your environment ({e.message})") from None
        raise TargetError(f"gemhub: your environment did not start; see {self.hub_url}hub/home")

    def plan(self, record: RuntimeRecord, argv: list[str], chan: asyncssh.SSHServerChannel,
             term: str | None, tty: bool) -> tuple[list[str], str | None, dict[str, str]]:
        peer = chan.get_extra_info("peername") or ("", 0)
        local = chan.get_extra_info("sockname") or ("", 0)
        env = session_env(record, chan.get_environment(), term, peer[:2], local[:2])
        return command_argv(record, argv, env, self.tools, as_root=self.as_root, tty=tty)

    # -- activity: an open SSH session keeps the server from being culled as idle ---------
    def session_opened(self, server: "GatewayServer", kind: str) -> None:
        key = (server.user, server.server)
        self.record(server.user, f"session.{kind}", server=server.server, source=server.source)
        self._open[key] = self._open.get(key, 0) + 1
        self.in_background(self.hub.activity(*key))
        if self._activity_task is None or self._activity_task.done():
            self._activity_task = asyncio.ensure_future(self._report_activity())

    def session_closed(self, server: "GatewayServer") -> None:
        key = (server.user, server.server)
        self._open[key] = self._open.get(key, 1) - 1
        if self._open[key] <= 0:
            del self._open[key]

    async def _report_activity(self) -> None:
        while self._open:
            await asyncio.sleep(ACTIVITY_EVERY)
            for user, server in list(self._open):
                await self.hub.activity(user, server)

    # -- port forwarding ------------------------------------------------------------------
    def owned_listener(self, record: RuntimeRecord, port: int, want: str) -> str | None:
        """The loopback address to connect to for ``port``: one where a process of the
        environment's unix user listens (blocking scan), preferring the family the client
        asked for (``want``). None when the user listens on none: the gateway then never
        connects, so it cannot reach another user's listener on the same port number."""
        found: list[str] = []
        for c in psutil.net_connections("tcp"):
            if c.status != psutil.CONN_LISTEN or not c.laddr or c.laddr.port != port:
                continue
            address = LISTEN_TO_CONNECT.get(c.laddr.ip)
            if address is None:
                continue
            if record.namespace != "none":  # the fallback runs everything as the hub's user
                try:
                    if not c.pid or psutil.Process(c.pid).uids().real != record.uid:
                        continue
                except psutil.Error:
                    continue
            found.append(address)
        if not found:
            return None
        return want if want in found else found[0]


class GatewayServer(asyncssh.SSHServer):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.login = ""
        self.user = ""
        self.server = ""
        self.source = ""
        self.draft: DraftTarget | None = None  # a login into a draft dataset/model version
        self._record: RuntimeRecord | None = None
        self._key_fingerprint: str | None = None
        self._password_ok = False
        self._banner_sent = False

    def connection_made(self, conn):
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?",)
        self.source = str(peer[0])

    async def begin_auth(self, username):
        self.login = username
        try:
            self.user, self.server = split_login(username)
            self.draft = draft_target(self.server)
        except TargetError as e:
            self.conn.send_auth_banner(e.message + "\n")
            self.user = ""
            return True
        until = await self.gateway.db(self.gateway.credentials.locked_until, self.user)
        if until is not None:
            self._banner_locked(until)
        return True

    def _banner_locked(self, until) -> None:
        """Tell the person why they are refused, once per connection (OpenSSH prints banners)."""
        if self._banner_sent:
            return
        self._banner_sent = True
        self.conn.send_auth_banner(self._locked_message(until))

    def _locked_message(self, until) -> str:
        return (f"gemhub: SSH login for {self.user} is locked until {until:%Y-%m-%d %H:%M} UTC after too many"
                " failed passwords; see the SSH page of the hub\n")

    def public_key_auth_supported(self):
        return True

    def password_auth_supported(self):
        return True

    async def validate_public_key(self, username, key):
        if not self.user or username != self.login:
            return False
        creds, db = self.gateway.credentials, self.gateway.db
        if await db(creds.locked_until, self.user) is not None:
            return False
        fingerprint = fingerprint_of(key)
        if not await db(creds.key_owner_matches, self.user, fingerprint):
            return False
        self._key_fingerprint = fingerprint  # the key whose signature asyncssh checks next
        return True

    def auth_completed(self):
        if self._key_fingerprint is not None and self._password_ok is False:
            user, fingerprint, source, creds = self.user, self._key_fingerprint, self.source, self.gateway.credentials

            def used():
                creds.key_used(user, fingerprint, source)
                creds.login_succeeded(user)

            self.gateway.in_background(self.gateway.db(used))
        self.gateway.log.info("%s logged in from %s", self.login, self.source)

    async def validate_password(self, username, password):
        if not self.user or username != self.login:
            return False
        creds, db = self.gateway.credentials, self.gateway.db
        claim = await db(creds.claim_password_check, self.user)
        if claim.hashed is None:
            if claim.refusal == "locked":
                self._banner_locked(claim.locked_until)
            return False
        ok = False
        try:
            ok = await asyncio.get_running_loop().run_in_executor(None, password_matches, password, claim.hashed)
        finally:
            locked = await db(creds.password_checked, self.user, ok, self.source)
        self._password_ok = ok
        if locked is not None:
            self._banner_locked(locked)
            self.gateway.log.warning("SSH login of %s locked until %s (last try from %s)", self.user, locked,
                                     self.source)
        return ok

    def session_requested(self):
        if self.draft is not None:
            return open_draft_session(self)  # a coroutine: asyncssh awaits it
        return EnvironmentSession(self)

    async def environment(self, notify=None) -> RuntimeRecord:
        """The login's environment, looked up once per connection (while its process lives)."""
        if self._record is None or not process_alive(self._record):
            self._record = await self.gateway.environment(self.user, self.server, notify)
        return self._record

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        return self._forward(dest_host, dest_port)

    async def _forward(self, dest_host: str, dest_port: int):
        if self.draft is not None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            f"a login into {self.draft.label} takes only sftp and scp")
        if dest_host not in LOOPBACK:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            "only ports of your environment (localhost:PORT) can be forwarded")
        try:
            record = await self.environment()
        except TargetError as e:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, e.message) from None
        address = await asyncio.get_running_loop().run_in_executor(
            None, self.gateway.owned_listener, record, dest_port, LOOPBACK[dest_host])
        self.gateway.record(self.user, "forward", server=self.server, port=dest_port,
                            allowed=address is not None, source=self.source)
        if address is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED,
                                            f"nothing of your environment listens on port {dest_port}")
        return await self.conn.forward_connection(address, dest_port)

    def server_requested(self, listen_host, listen_port):
        return False  # remote forwarding (ssh -R) would open ports on the host: not offered


def load_host_key(path: Path) -> asyncssh.SSHKey:
    """The gateway's host key, generated once (ed25519) so clients can pin it."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    os.replace(tmp, path)
    return key


async def start_gateway(gateway: Gateway, host: str, port: int, host_key: asyncssh.SSHKey,
                        window: int = 8 * 1024 * 1024, max_pktsize: int = 256 * 1024):
    return await asyncssh.create_server(
        lambda: GatewayServer(gateway), host, port,
        server_host_keys=[host_key], encoding=None, window=window, max_pktsize=max_pktsize,
        allow_scp=False, agent_forwarding=False, x11_forwarding=False, login_timeout=60,
        keepalive_interval=60, line_editor=False,
    )
