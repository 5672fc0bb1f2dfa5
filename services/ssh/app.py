"""The ssh service (``python -m gemhub.services.ssh.app``): the SSH gateway on one port and,
under /services/ssh/, the page and API where users register keys and an SSH password."""

from __future__ import annotations

import asyncio
import datetime
import os
from pathlib import Path

from traitlets import Float, Bool, Integer, Unicode, default

from gemhub.services.common import lifecycle
from gemhub.services.common.app import GemService, StartFailure
from gemhub.services.common.openapi import OpenAPIRegistry, nullable
from gemhub.services.data.client import DataClient

from . import handlers as h
from .credentials import Credentials
from .gateway import Gateway, load_host_key, start_gateway
from .hubclient import HubClient
from .models import AuditEvent

HERE = Path(__file__).resolve().parent

KEY = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "algorithm": {"type": "string"},
    "fingerprint": {"type": "string"}, "public_key": {"type": "string"}, "created": {"type": "string"},
    "last_used": nullable({"type": "string"})}}
STATUS = {"type": "object", "properties": {
    "has_password": {"type": "boolean"}, "locked": {"type": "boolean"},
    "locked_until": nullable({"type": "string"}), "failures": {"type": "integer"},
    "attempts_left": {"type": "integer"}, "connection": {"type": "object"}}}


class SSHService(GemService):
    name = "ssh"
    description = ("GemHub SSH gateway: ssh, scp, sftp and port forwarding into running environments;"
                   " sftp and scp into draft dataset/model versions")

    migrations_dir = HERE / "migrations"
    templates_dir = HERE / "templates"
    audit_model = AuditEvent

    aliases = {**GemService.aliases, "port": "SSHService.port"}

    ssh_host = Unicode("127.0.0.1", help="Address the SSH gateway listens on.").tag(config=True)
    draft_recheck_seconds = Float(
        15.0, help="How often an open SFTP session into a draft asks the data service again whether "
        "its user may still write it (a removed member's session ends within this time).",
    ).tag(config=True)
    ssh_port = Integer(2222, help="Port of the SSH gateway (0: any free port).").tag(config=True)
    public_host = Unicode(
        "", help="Host name shown to users in ssh commands (empty: the host the browser used)."
    ).tag(config=True)
    hub_url = Unicode(
        "", help="Public URL of the hub (for 'start it at ...' messages; empty: http://127.0.0.1:8000/)."
    ).tag(config=True)
    start_stopped = Bool(
        False, help="Start a stopped environment through the hub API when someone logs in over SSH."
    ).tag(config=True)
    max_failures = Integer(5, help="Wrong SSH passwords in a row that lock the account.").tag(config=True)
    lockout_seconds = Integer(1800, help="How long a locked SSH account stays locked.").tag(config=True)
    host_key_file = Unicode(
        help="The gateway's private host key (default <state_dir>/secrets/ssh_host_ed25519_key, made once)."
    ).tag(config=True)

    data_url = Unicode(
        help="Base URL of the data service (…/services/data/), asked about SFTP into draft versions"
             " (env GEMHUB_DATA_URL; empty: draft logins are refused)."
    ).tag(config=True)

    @default("data_url")
    def _default_data_url(self):
        return os.environ.get("GEMHUB_DATA_URL", "")

    @default("host_key_file")
    def _default_host_key_file(self):
        return os.path.join(self.state_dir, "secrets", "ssh_host_ed25519_key")

    @default("hub_url")
    def _default_hub_url(self):
        return "http://127.0.0.1:8000/"

    def credentials(self) -> Credentials:
        if not hasattr(self, "_credentials"):
            self._credentials = Credentials(self.sessionmaker, self.max_failures,
                                            datetime.timedelta(seconds=self.lockout_seconds))
        return self._credentials

    def api_handlers(self):
        return [
            ("", h.IndexPage),
            ("api/v1/keys", h.KeysAPI),
            (r"api/v1/keys/([^/]+)", h.KeyAPI),
            ("api/v1/password", h.PasswordAPI),
            ("api/v1/status", h.StatusAPI),
        ]

    def extra_settings(self):
        return {"credentials": self.credentials(), "ssh_port": self.ssh_port,
                "ssh_public_host": self.public_host}

    def openapi(self) -> OpenAPIRegistry:
        r = OpenAPIRegistry("GemHub ssh service")
        r.add("get", "/keys", "The caller's registered public keys",
              response={"type": "object", "properties": {"items": {"type": "array", "items": KEY},
                                                         "_pagination": {"type": "object"}}})
        r.add("post", "/keys", "Register a public key (OpenSSH one-line form)", status=201, response=KEY,
              errors=(409,),
              request={"type": "object", "required": ["public_key"],
                       "properties": {"public_key": {"type": "string"}, "name": {"type": "string"}}})
        r.add("delete", "/keys/{key_id}", "Delete one of the caller's keys", status=204)
        r.add("put", "/password", "Set the caller's SSH password", response=STATUS,
              request={"type": "object", "required": ["password"],
                       "properties": {"password": {"type": "string", "minLength": 8}}})
        r.add("delete", "/password", "Remove the caller's SSH password", status=204)
        r.add("get", "/status", "Lockout state and connection details of the caller", response=STATUS)
        return r

    async def serve(self):
        # the data service knows this service by its own hub token
        data = DataClient(self.data_url, os.environ.get("JUPYTERHUB_API_TOKEN", "")) if self.data_url else None
        gateway = Gateway(
            credentials=self.credentials(), hub=HubClient(log=self.log), state_dir=self.state_dir,
            hub_url=self.hub_url, start_stopped=self.start_stopped, log=self.log, data=data,
            database=self.database,
            draft_recheck_seconds=self.draft_recheck_seconds,
        )
        host_key = await asyncio.get_running_loop().run_in_executor(None, load_host_key, Path(self.host_key_file))
        try:
            server = await start_gateway(gateway, self.ssh_host, self.ssh_port, host_key)
        except OSError as e:
            await gateway.hub.aclose()
            raise StartFailure(lifecycle.describe_bind_error(e, self.ssh_host, self.ssh_port)
                               + "; set GEMHUB_SSH_PORT or services.ssh.port") from None
        port = server.sockets[0].getsockname()[1]
        self.log.info("SSH gateway listening on %s:%d", self.ssh_host, port)
        try:
            await super().serve()
        finally:
            server.close()
            await gateway.hub.aclose()
            if data is not None:
                await data.aclose()


main = SSHService.launch_instance

if __name__ == "__main__":
    main()
