"""Typed async client of the ssh service (used by the hub's admin console)."""

from __future__ import annotations

from gemhub.services.common.client import ServiceClient, ServiceError


class SSHError(ServiceError):
    """A refusal (or failure) of the ssh service: HTTP ``status`` and its ``message``."""


class SSHClient(ServiceClient):
    """``SSHClient(base_url, token)``: base_url ends with …/services/ssh/; with the service's
    own token, calls act for the ``user`` they name."""

    service = "ssh"
    error = SSHError

    async def status(self, user: str) -> dict:
        """{"has_password", "locked", "locked_until", "failures", ...} of a user's SSH login."""
        return await self._call("GET", "status", {"user": user})
