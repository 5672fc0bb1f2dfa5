"""Stop hooks: how the quota service tells a workload's owner to stop it.

The contract (the jobs service implements it for ``job`` and ``inference``):

- The owner registers, with its own hub service token, ``PUT /api/v1/hooks/<kind>``
  ``{"url": "http://...", "token": "<secret>"}``. The quota service keeps the URL and the
  secret (its database is root-only) and shows neither the secret nor anyone else's hook.
- To preempt, the quota service sends ``POST <url>`` with ``Authorization: token <secret>``
  and ``{"event": "preempt", "admission": {...}, "reason": "..."}``. A 2xx answer means
  "accepted": the owner stops the workload (and may ask for a new admission to requeue it)
  and then releases the entry, ``DELETE /api/v1/admissions/<id>``. Until then the entry
  still holds its resources; undelivered or unanswered requests are sent again by the
  reconciliation loop.
- For reconciliation the quota service sends ``{"event": "status", "holders": [...]}``; the
  answer ``{"alive": [...]}`` lists the holders the owner still runs. Entries of the other
  holders are closed.

Notebooks have a built-in owner: the hub (a server is stopped through the hub API).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from gemhub.services.common import params
from gemhub.services.common.errors import BadRequest

from .quotas import KINDS

log = logging.getLogger("gemhub.quota.hooks")
TIMEOUT = 10


def validate_hook(kind: str, body: Any) -> tuple[str, str]:
    """(url, token) of a registration body; BadRequest with the reason otherwise."""
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, not {params.echo(kind)}")
    if not isinstance(body, dict) or set(body) - {"url", "token"}:
        raise BadRequest('send {"url": "http://...", "token": "..."}')
    url, token = body.get("url"), body.get("token")
    if not isinstance(url, str) or len(url) > 2048:
        raise BadRequest("url must be an http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise BadRequest("url must be an http(s) URL without credentials")
    if not isinstance(token, str) or not 16 <= len(token) <= 1024 or not token.isprintable():
        raise BadRequest("token must be a secret of 16 to 1024 printable characters")
    return url, token


def describe_url(url: str) -> str:
    """The hook's address without its path and query (what other callers may see)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def call(url: str, token: str, payload: dict) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
        return await client.post(url, json=payload, headers={"Authorization": f"token {token}"})


async def preempt(url: str, token: str, admission: dict, reason: str) -> tuple[bool, str]:
    """(accepted, what happened) of one preemption request."""
    try:
        r = await call(url, token, {"event": "preempt", "admission": admission, "reason": reason})
    except httpx.HTTPError as e:
        return False, f"hook unreachable: {type(e).__name__}: {e}"
    if 200 <= r.status_code < 300:
        return True, f"hook accepted ({r.status_code})"
    return False, f"hook answered {r.status_code}: {r.text[:200]}"


async def alive(url: str, token: str, holders: list[str]) -> set[str] | None:
    """The holders the owner still runs (None: it could not tell; nothing is closed then)."""
    try:
        r = await call(url, token, {"event": "status", "holders": holders})
        if r.status_code != 200:
            return None
        data = r.json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("alive"), list):
        return None
    return {h for h in data["alive"] if isinstance(h, str)}
