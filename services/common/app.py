"""``GemService``: the traitlets Application every GemHub service is built on.

It reads the JUPYTERHUB_* environment the hub gives managed services, opens the service's
database (running its Alembic migrations), serves a tornado app under the service prefix and
stops cleanly on SIGINT/SIGTERM. Its lifecycle (:mod:`.lifecycle`): it dies with the hub
(PR_SET_PDEATHSIG, ``kill -9`` included), runs once per state directory (a predecessor is
stopped first), and a failed start leaves one line saying why for ``make run``.

Secrets never come on the command line (visible in ``ps`` and the hub's log): the database
URL is ``GEMHUB_DATABASE_URL`` (or the file named by ``GEMHUB_DATABASE_URL_FILE``), the hub
token ``JUPYTERHUB_API_TOKEN`` as JupyterHub sets it, other secrets ``GEMHUB_*`` variables
(see :func:`secret_from_env`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from pathlib import Path

import jinja2
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets import Bool, Integer, Unicode, default
from traitlets.config import Application

from sqlalchemy.exc import SQLAlchemyError

from . import lifecycle, metrics
from .auth import OAuthCallbackHandler, make_hub_auth
from .db import Database, make_engine, make_sessionmaker, run_migrations
from .handlers import HealthHandler, NotFoundHandler, OpenAPIHandler
from .lifecycle import StartFailure, die_with_parent
from .openapi import OpenAPIRegistry

# Layout and error page shared by every service with HTML pages.
COMMON_TEMPLATES = Path(__file__).parent / "templates"
# what a GemHub service's command line contains (a predecessor is recognised by it)
SERVICE_MARKER = "gemhub.services."
DATABASE_URL_ENV = "GEMHUB_DATABASE_URL"


def secret_from_env(name: str, env=os.environ) -> str:
    """A secret from the environment variable ``name``, or from the file named by
    ``name``_FILE (a Kubernetes Secret mounted as a file); empty when neither is set."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    return ""


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class GemService(Application):
    """Base of the GemHub services; subclasses define handlers, models and migrations."""

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    @default("log_format")
    def _default_log_format(self):
        return "[%(name)s %(asctime)s %(levelname)s] %(message)s"

    service_name = Unicode(
        help="Name of the service as registered in the hub (JUPYTERHUB_SERVICE_NAME)."
    ).tag(config=True)

    @default("service_name")
    def _default_service_name(self):
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", self.name)

    ip = Unicode("127.0.0.1", help="Address to listen on.").tag(config=True)
    port = Integer(0, help="Port to listen on (0: any free port, logged at start).").tag(config=True)
    state_dir = Unicode(help="GemHub state directory (GEMHUB_STATE_DIR, default ./var).").tag(config=True)

    @default("state_dir")
    def _default_state_dir(self):
        return os.path.abspath(os.environ.get("GEMHUB_STATE_DIR", "var"))

    db_url = Unicode(
        help="SQLAlchemy URL of the service's database: GEMHUB_DATABASE_URL (or the file named by "
        "GEMHUB_DATABASE_URL_FILE), else SQLite <state_dir>/db/<name>.sqlite. It may hold a "
        "password: give it in the environment, never on the command line."
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self):
        return (secret_from_env(DATABASE_URL_ENV)
                or f"sqlite:///{self.state_dir}/db/{self.service_name}.sqlite")

    base_url = Unicode(
        help="URL prefix the service is served under (JUPYTERHUB_SERVICE_PREFIX)."
    ).tag(config=True)

    @default("base_url")
    def _default_base_url(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.service_name}/")

    hub_prefix = Unicode(help="URL prefix of the hub's pages (JUPYTERHUB_BASE_URL + hub/).").tag(config=True)

    @default("hub_prefix")
    def _default_hub_prefix(self):
        return url_path_join(os.environ.get("JUPYTERHUB_BASE_URL", "/"), "hub/")

    cookie_secret = Unicode(
        help="Secret signing the service's OAuth and xsrf cookies (env GEMHUB_COOKIE_SECRET, shared by"
        " every replica of a service; else random per process)."
    ).tag(config=True)

    @default("cookie_secret")
    def _default_cookie_secret(self):
        return os.environ.get("GEMHUB_COOKIE_SECRET") or secrets.token_hex(32)

    die_with_hub = Bool(
        True, help="Run as a service the hub started: exit (SIGTERM) when the hub dies, on Linux, and "
        "be the only one on the state directory (a predecessor is stopped first). Off for services "
        "deployed on their own, e.g. Kubernetes replicas."
    ).tag(config=True)

    max_body_bytes = Integer(
        2**20, help="Largest JSON request body the API accepts (bytes); bigger ones answer 413. "
        "Upload chunks have their own limit (the file's size)."
    ).tag(config=True)

    aliases = {"port": "GemService.port", "db-url": "GemService.db_url", "state-dir": "GemService.state_dir"}

    # -- to override -------------------------------------------------------------------
    migrations_dir: Path | None = None
    templates_dir: Path | None = None
    audit_model: type | None = None

    def api_handlers(self) -> list[tuple]:
        """(path relative to the base URL, handler class[, kwargs]) of the service."""
        return []

    def openapi(self) -> OpenAPIRegistry:
        return OpenAPIRegistry(f"GemHub {self.service_name} service")

    # -- setup -------------------------------------------------------------------------
    def init_db(self):
        self.engine = make_engine(self.db_url)
        if self.migrations_dir is not None:
            run_migrations(self.engine, self.migrations_dir)
        self.sessionmaker = make_sessionmaker(self.engine, self.audit_model)
        self.database = Database(self.sessionmaker)

    def extra_settings(self) -> dict:
        return {}

    def make_app(self, hub_auth=None) -> web.Application:
        """The tornado application (``hub_auth`` is replaced by a fake in unit tests)."""
        if not hasattr(self, "sessionmaker"):
            self.init_db()
        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        if hub_auth is None:
            hub_auth = make_hub_auth(base)
        routes = [
            (url_path_join(base, "health"), HealthHandler),
            (url_path_join(base, "metrics"), metrics.MetricsHandler),
            (url_path_join(base, "oauth_callback"), OAuthCallbackHandler),
            (url_path_join(base, "api/v1/openapi.json"), OpenAPIHandler),
        ]
        for entry in self.api_handlers():
            routes.append((url_path_join(base, entry[0]), *entry[1:]))
        jinja_env = None
        if self.templates_dir is not None:
            # The service's own templates win over the shared ones of the same name; a
            # service's base.html reaches the shared layout as "common/base.html".
            jinja_env = jinja2.Environment(
                loader=jinja2.ChoiceLoader([
                    jinja2.FileSystemLoader([str(self.templates_dir), str(COMMON_TEMPLATES)]),
                    jinja2.PrefixLoader({"common": jinja2.FileSystemLoader(str(COMMON_TEMPLATES))}),
                ]),
                autoescape=True,
            )
        name = self.service_name
        settings = dict(
            hub_auth=hub_auth,
            service_name=name,
            service_base_url=base,
            api_base_url=url_path_join(base, "api/v1"),
            hub_prefix=self.hub_prefix,
            database=self.database,
            max_body_bytes=self.max_body_bytes,
            jinja_env=jinja_env,
            openapi=self.openapi(),
            cookie_secret=self.cookie_secret,
            login_url=url_path_join(self.hub_prefix, "login"),
            default_handler_class=NotFoundHandler,
            log_function=lambda handler: self._log_request(handler),
            service_app=self,
            # gzip pages and JSON (text types only: file downloads are octet-stream)
            compress_response=True,
        )
        settings.update(self.extra_settings())
        return web.Application(routes, **settings)

    def _log_request(self, handler):
        metrics.record_request(self.service_name, handler)
        status = handler.get_status()
        log = self.log.warning if status >= 500 else self.log.info if status >= 400 else self.log.debug
        log("%d %s %s %.1fms", status, handler.request.method, handler.request.uri,
            1000 * handler.request.request_time())

    # -- run ---------------------------------------------------------------------------
    async def serve(self):
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, sig)
        app = self.make_app()
        server = HTTPServer(app, xheaders=True)
        try:
            sockets = bind_sockets(self.port, self.ip)
        except OSError as e:
            raise StartFailure(lifecycle.describe_bind_error(e, self.ip, self.port)
                               + f" (the {self.service_name} service's own port, kept in"
                               f" {self.state_dir}/ports.json: remove the entry to pick another)") from None
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        self.log.info("%s service listening on http://%s:%d%s", self.service_name, self.ip, port, self.base_url)
        try:
            await self._stopping.wait()
        finally:
            server.stop()
            try:
                await asyncio.wait_for(server.close_all_connections(), 5)
            except asyncio.TimeoutError:
                self.log.warning("connections still open at exit")
            self.database.close()
            self.engine.dispose()
            self.log.info("%s service stopped", self.service_name)

    def stop(self, sig=None):
        if sig is not None:
            self.log.info("received %s, stopping", signal.Signals(sig).name)
        self._stopping.set()

    def start(self):
        if self.die_with_hub:
            die_with_parent(signal.SIGTERM)
        try:
            if self.die_with_hub:
                self._claim = lifecycle.claim(self.state_dir, self.service_name, SERVICE_MARKER)
            try:
                self.init_db()
            except SQLAlchemyError as e:
                raise StartFailure(f"cannot use its database: {_one_line(e)}") from None
            asyncio.run(self.serve())
        except StartFailure as e:
            self.log.critical("%s service cannot start: %s", self.service_name, e)
            lifecycle.report_failure(self.state_dir, self.service_name, str(e))
            self.exit(1)
