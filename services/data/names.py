"""Names and paths of the data service's things (pure).

Appendix A of the requirements: a file name is 1-64 characters without ``/``. A dataset or
model name follows the same rule and is unique per workspace. Paths inside a draft are
``/``-joined file names; ``.``, ``..``, empty parts and NUL are refused, so a path can never
leave its draft.
"""

from __future__ import annotations

import re

from gemhub.services.common.params import echo
from gemhub.services.common.errors import BadRequest

MAX_NAME = 64
MAX_DESCRIPTION = 2000
MAX_TAGS = 20
MAX_TAG = 32
KINDS = ("dataset", "model")
VISIBILITIES = ("public", "workspace", "private")
_TAG = re.compile(r"^[\w.+-]{1,32}$")


class InvalidName(BadRequest):
    """A file, folder or asset name that breaks the naming rules (HTTP 400)."""


def check_file_name(name: object, what: str = "file name") -> str:
    """A single path component: 1-64 characters, no ``/``, no NUL, not ``.`` or ``..``."""
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string, not {echo(name)}")
    if name == "":
        raise InvalidName(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidName(f"{what} {name[:20]!r}… is {len(name)} characters long (at most {MAX_NAME})")
    if "/" in name:
        raise InvalidName(f"{what} {name!r} must not contain '/'")
    if "\0" in name:
        raise InvalidName(f"{what} {name!r} must not contain a NUL character")
    if name in (".", ".."):
        raise InvalidName(f"{what} must not be {name!r}")
    return name


def split_path(path: object, what: str = "path", allow_root: bool = False) -> list[str]:
    """A relative path inside a draft as its checked components (leading/trailing ``/`` ignored)."""
    if not isinstance(path, str):
        raise InvalidName(f"{what} must be a string, not {echo(path)}")
    stripped = path.strip("/")
    if not stripped:
        if allow_root:
            return []
        raise InvalidName(f"{what} must name a file or folder")
    parts = stripped.split("/")
    for part in parts:
        check_file_name(part, f"{what} component")
    return parts


def check_asset_name(name: object, kind: str = "dataset") -> str:
    if isinstance(name, str):
        name = name.strip()
    return check_file_name(name, f"{kind} name")


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, not {echo(kind)}")
    return kind  # type: ignore[return-value]


def check_visibility(value: object) -> str:
    if value not in VISIBILITIES:
        raise BadRequest(f"visibility must be one of {', '.join(VISIBILITIES)}, not {echo(value)}")
    return value  # type: ignore[return-value]


def check_description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"description must be a string, not {echo(value)}")
    if len(value) > MAX_DESCRIPTION:
        raise BadRequest(f"description is {len(value)} characters long (at most {MAX_DESCRIPTION})")
    return value


def check_tags(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [t for t in (s.strip() for s in value.split(",")) if t]
    if not isinstance(value, list):
        raise BadRequest(f"tags must be a list of strings, not {echo(value)}")
    if len(value) > MAX_TAGS:
        raise BadRequest(f"at most {MAX_TAGS} tags, not {len(value)}")
    out: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise BadRequest(f"tag {echo(tag)} must be 1-{MAX_TAG} letters, digits or . _ + -")
        if tag not in out:
            out.append(tag)
    return out
