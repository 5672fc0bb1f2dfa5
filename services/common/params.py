"""The one parser of the numbers and references a client sends (pure: no tornado).

Every id, version number, offset, limit, size or other whole number that arrives in a
path, a query argument, a header or a JSON body goes through here, and comes out as a
bounded ``int`` or a :class:`~gemhub.services.common.errors.BadRequest` (400) with a message
a person understands. Handlers never call ``int()`` on client text themselves, because:

- ``int()`` accepts what a client did not mean as a number: ``" 7"``, ``"+7"``, ``"7_0"``,
  ``"٣"`` (Arabic-Indic 3), and ``"²".isdigit()`` is true while ``int("²")`` fails;
- an unbounded ``int`` reaches the database: SQLite and PostgreSQL store 64-bit integers,
  and ``2**63`` raises ``OverflowError`` in the driver (a 500).

Only ASCII digits are accepted for text; JSON numbers must be integers (not ``true``, not
``1.0``); ids lie in ``1 .. 2**63-1`` (BIGINT), counts and offsets in ``0 .. 2**63-1``.

Values a client sent are echoed back in messages only through :func:`echo`, which cuts
them to :data:`ECHO_CHARS` characters: an error must never amplify a hostile body.

Use (new handlers follow the same pattern)::

    ws_id = params.id_arg(ws_id, "workspace id")                 # a path segment
    offset, limit = params.page(query("offset"), query("limit"))  # JupyterHub-style paging
    n = params.whole(body.get("size"), "size", low=0, high=MAX)   # a JSON or text number
    ref = params.ref(query("workspace"), "workspace")             # a name or an id
    ident = params.as_id(ref)                                     # the id it may name
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BadRequest

INT64_MAX = 2**63 - 1  # the largest value SQLite's INTEGER and PostgreSQL's BIGINT hold
ECHO_CHARS = 80
MAX_LIMIT = 200  # the largest page a list answers
MAX_NAME = 255   # the longest name a reference may carry (longer is refused, not truncated)

_DIGITS = re.compile(r"[0-9]{1,19}")  # 19 digits hold INT64_MAX; more can never fit


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages that quote client input."""
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of a huge string is never built
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def whole(value: Any, what: str, low: int = 0, high: int = INT64_MAX) -> int:
    """A whole number from JSON (an int) or text (ASCII digits, an optional leading '-'
    only when ``low`` is negative), within ``low..high``; anything else is a 400."""
    if isinstance(value, bool):
        raise BadRequest(f"{what} must be a whole number, not {echo(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value
        negative = text.startswith("-") and low < 0
        digits = text[1:] if negative else text
        if not _DIGITS.fullmatch(digits):
            if text.startswith("-") or (text.isascii() and text.isdigit()):
                raise BadRequest(f"{what} must be between {low} and {high}, not {echo(value)}")
            raise BadRequest(f"{what} must be a whole number written with the digits 0-9, not {echo(value)}")
        number = -int(digits) if negative else int(digits)
    else:
        raise BadRequest(f"{what} must be a whole number, not {echo(value)}")
    if not low <= number <= high:
        raise BadRequest(f"{what} must be between {low} and {high}, not {echo(number)}")
    return number


def id_arg(value: Any, what: str = "id") -> int:
    """A database id: 1 .. 2**63-1."""
    return whole(value, what, low=1)


def optional(value: Any, what: str, low: int = 0, high: int = INT64_MAX) -> int | None:
    """:func:`whole`, with None or an empty/blank text meaning "not given"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return whole(value, what, low, high)


def page(offset: Any, limit: Any, max_limit: int = MAX_LIMIT) -> tuple[int, int]:
    """(offset, limit) of a list, the JupyterHub way: limit 0 or absent is the largest page."""
    start = optional(offset, "offset")
    size = optional(limit, "limit")
    return start or 0, min(size or max_limit, max_limit)


def ref(value: Any, what: str) -> int | str | None:
    """A reference by name or id: an ``int`` id when JSON sent a number, else the stripped
    text (1..255 characters, no '/'), None when blank/absent. Text made of digits stays
    text: a name may be all digits; :func:`as_id` says which id it could also name."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{what} must be a name or an id, not {echo(value)}")
    if isinstance(value, int):
        return id_arg(value, f"{what} id")
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a name or an id, not {echo(value)}")
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_NAME or "/" in text:
        raise BadRequest(f"{what} {echo(value)} is not a valid name (1-{MAX_NAME} characters, no '/')")
    return text


def as_id(value: Any) -> int | None:
    """The id a reference names: an int in 1..2**63-1 as is, text of ASCII digits in that
    range as its number; None for anything that cannot be an id (a name, "²", 2**64)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= INT64_MAX else None
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text) and 1 <= int(text) <= INT64_MAX:
            return int(text)
    return None


def flag(value: Any, what: str) -> bool:
    """A yes/no query argument: 1/true/yes or 0/false/no/empty (any case)."""
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("", "0", "false", "no"):
        return False
    raise BadRequest(f"{what} must be true or false, not {echo(value)}")
