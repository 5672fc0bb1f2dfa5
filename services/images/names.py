"""Names, tags and choices of the image service (pure).

An image's name follows the platform's file-name rule (1-64 characters, no ``/``) and is
unique per workspace; storage and registry references use ids, never names, so two
names can never meet in one reference. Tags follow the OCI tag grammar.
"""

from __future__ import annotations

import string

from gemhub.services.common.errors import BadRequest
from gemhub.services.data.names import VISIBILITIES, check_description, check_file_name, check_visibility

__all__ = ["VISIBILITIES", "check_description", "check_image_name", "check_tag", "check_visibility",
           "parse_choice"]

MAX_TAG = 128
TAG_FIRST = string.ascii_letters + string.digits + "_"
TAG_REST = TAG_FIRST + ".-"
RESERVED_TAGS = ("latest",)


def check_image_name(name: object) -> str:
    if isinstance(name, str):
        name = name.strip()
    name = check_file_name(name, "image name")
    if ":" in name:
        raise BadRequest(f"image name {name!r} must not contain ':' (it separates a tag: NAME:TAG)")
    return name


def check_tag(tag: object) -> str:
    if not isinstance(tag, str) or not tag:
        raise BadRequest(f"a tag must be a non-empty text, not {tag!r}")
    if len(tag) > MAX_TAG:
        raise BadRequest(f"tag {tag[:20]!r}… is {len(tag)} characters long (at most {MAX_TAG})")
    if tag[0] not in TAG_FIRST or any(c not in TAG_REST for c in tag):
        raise BadRequest(f"tag {tag!r} must be letters, digits, _ . - (not starting with . or -)")
    if tag in RESERVED_TAGS:
        raise BadRequest(f"{tag!r} always means the newest built version and cannot be set")
    return tag


def _whole(value: object, what: str, least: int) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"{what} must be a whole number, not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        number = int(value.strip())
    else:
        raise BadRequest(f"{what} must be a whole number, not {value!r}")
    if number < least or number > 2**31 - 1:
        raise BadRequest(f"{what} must be between {least} and {2**31 - 1}, not {number}")
    return number


def parse_choice(choice: object, what: str = "image") -> dict:
    """An image choice as a client gives it: a name, an id, or {"id"|"name", "version"|"tag"}.
    Returns {"id"| "name", optional "version" | "tag"} (what it names is checked later)."""
    if isinstance(choice, bool) or choice is None:
        raise BadRequest(f"{what} must be a name, an id or an object with id or name, not {choice!r}")
    if isinstance(choice, int):
        return {"id": _whole(choice, f"{what} id", 1)}
    if isinstance(choice, str):
        text = choice.strip()
        name, _, tail = text.partition(":")
        out: dict = {"name": check_image_name(name)}
        if tail:
            if tail.startswith("v") and tail[1:].isdigit():
                out["version"] = _whole(tail[1:], f"{what} version", 1)
            elif tail != "latest":
                out["tag"] = check_tag(tail)
        return out
    if not isinstance(choice, dict):
        raise BadRequest(f"{what} must be a name, an id or an object with id or name, not {choice!r}")
    unknown = sorted(set(choice) - {"id", "name", "version", "tag"})
    if unknown:
        raise BadRequest(f"unknown key(s) {', '.join(unknown)} in {what} (known: id, name, version, tag)")
    out = {}
    if choice.get("id") is not None:
        out["id"] = _whole(choice["id"], f"{what} id", 1)
    elif choice.get("name") is not None:
        out["name"] = check_image_name(choice["name"])
    else:
        raise BadRequest(f"{what} needs an id or a name")
    if choice.get("version") is not None and choice.get("tag") is not None:
        raise BadRequest(f"{what}: give a version or a tag, not both")
    if choice.get("version") is not None:
        out["version"] = _whole(choice["version"], f"{what} version", 1)
    elif choice.get("tag") not in (None, "", "latest"):
        out["tag"] = check_tag(choice["tag"])
    return out
