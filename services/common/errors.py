"""One small error hierarchy for the services, with its HTTP status.

Pure Python (no tornado): domain modules raise these; the HTTP layer maps them to
``{"status": N, "message": "..."}`` in one place (:mod:`gemhub.services.common.handlers`).
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal with a message meant for the caller."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"status": self.status, "message": self.message}


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class PayloadTooLarge(ServiceError):
    status = 413


class Unavailable(ServiceError):
    """A dependency (the hub API) could not answer; nothing was changed."""

    status = 503
