"""Names the local runtime derives from user input: unix accounts, cgroups, logs (pure).

Every name is an injective function of what it is derived from, so two hub users (or two
servers) can never share an account, a cgroup or a log file (ARCHITECTURE.md §6). Like
kubespawner's ``slugs.py``: a text that is already safe is kept as is; anything else becomes
a slug plus ``--`` plus a hash of the *exact* original. Safe texts never contain ``--``, so a
kept name and a hashed name can never be equal.

- unix account of hub user ``u``: ``<prefix>u`` or ``<prefix><slug>--<hash>`` (≤ 32 chars);
- server key of server name ``s``: ``""`` for the default server, ``s`` or ``<slug>--<hash>``;
- unit (cgroup directory, server log) of a server: the account, plus ``.<server key>`` for a
  named server. Neither part contains ``.``, so the unit splits back into both.
"""

from __future__ import annotations

import hashlib
import re

MAX_UNIX_NAME = 32
HASH_CHARS = 12  # 48 bits of sha256: a chance collision needs ~16 million names
MAX_SERVER_KEY = 40
_SAFE = re.compile(r"^[a-z0-9_][a-z0-9_-]*$")
_UNIX = re.compile(r"^[a-z_][a-z0-9_-]*$")
_PREFIX = re.compile(r"^[a-z_][a-z0-9_-]*$")


class NamingError(ValueError):
    """A name cannot be derived (e.g. a prefix that would break injectivity)."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def _slug(text: str, length: int) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)[:length].rstrip("-")
    return slug or "u"


def _is_safe(text: str) -> bool:
    return bool(_SAFE.match(text)) and "--" not in text and not text.endswith("-")


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix) or "--" in prefix or len(prefix) > 12:
        raise NamingError(f"the unix account prefix {prefix!r} must be 1-12 characters of a-z, 0-9, _ "
                         "and -, start with a letter or _, and not contain '--'")
    return prefix


def unix_name(hub_user: str, prefix: str = "gem-") -> str:
    """The unix account of a hub user (valid for useradd, ≤ 32 characters, injective)."""
    check_prefix(prefix)
    plain = prefix + hub_user
    if _is_safe(hub_user) and len(plain) <= MAX_UNIX_NAME and _UNIX.match(plain) and "--" not in plain:
        return plain
    room = MAX_UNIX_NAME - len(prefix) - 2 - HASH_CHARS
    return f"{prefix}{_slug(hub_user, room)}--{_digest(hub_user)}"


def legacy_unix_name(hub_user: str, prefix: str = "gem-") -> str:
    """The account name earlier releases made (not injective: ``alice.smith`` and
    ``alice-smith-<its hash>`` collided); only used to migrate such accounts."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", hub_user.lower()).strip("-") or "user"
    name = prefix + slug
    if slug != hub_user or len(name) > MAX_UNIX_NAME or not _UNIX.match(name):
        digest = hashlib.sha256(hub_user.encode()).hexdigest()[:8]
        name = f"{prefix}{slug[:MAX_UNIX_NAME - len(prefix) - 9]}-{digest}"
        if not _UNIX.match(name):
            name = f"{prefix}u-{digest}"
    return name


def server_key(server: str) -> str:
    """A file-name-safe key of a server name ("" for the default server, injective)."""
    if not server:
        return ""
    if _is_safe(server) and len(server) <= MAX_SERVER_KEY:
        return server
    return f"{_slug(server, MAX_SERVER_KEY - 2 - HASH_CHARS)}--{_digest(server)}"


def unit_name(unix_user: str, server: str = "") -> str:
    """The cgroup directory and log name of one server of ``unix_user`` (injective in both)."""
    if not _UNIX.match(unix_user) or "." in unix_user:
        raise NamingError(f"{unix_user!r} is not a unix account name made by unix_name()")
    key = server_key(server)
    return f"{unix_user}.{key}" if key else unix_user


def workspace_group(ws_id: int) -> str:
    """The unix group of a workspace's members (ids are integers: the name is injective)."""
    if isinstance(ws_id, bool) or not isinstance(ws_id, int) or ws_id < 0:
        raise NamingError(f"workspace id must be a whole number, not {ws_id!r}")
    return f"gemws-{ws_id}"
