"""Workspace rules (pure: no tornado, no jupyterhub, no database).

Names, roles and who may do what in a workspace. Violations raise the service errors of
:mod:`gemhub.services.common.errors`, which the HTTP layer turns into 4xx responses.
"""

from __future__ import annotations

import unicodedata

from gemhub.services.common.errors import BadRequest, Conflict, Forbidden
from gemhub.services.common.params import echo

MAX_NAME = 63
_CONTROL = ("Cc", "Cf", "Cs", "Co", "Cn")  # unicode categories refused in names
DEFAULT_PROJECT = "default"

OWNER, ADMIN, MEMBER = "owner", "admin", "member"
ROLES = (OWNER, ADMIN, MEMBER)

# What each role may do in a workspace.
VIEW = "view"
CREATE_PROJECT = "create_project"
MANAGE_PROJECTS = "manage_projects"  # rename/delete projects
RENAME = "rename"
MANAGE_MEMBERS = "manage_members"
DELETE = "delete"

PERMISSIONS: dict[str, frozenset[str]] = {
    OWNER: frozenset({VIEW, CREATE_PROJECT, MANAGE_PROJECTS, RENAME, MANAGE_MEMBERS, DELETE}),
    ADMIN: frozenset({VIEW, CREATE_PROJECT, MANAGE_PROJECTS, RENAME, MANAGE_MEMBERS}),
    MEMBER: frozenset({VIEW, CREATE_PROJECT}),
}

_ACTION_WORDS = {
    VIEW: "view this workspace",
    CREATE_PROJECT: "create projects",
    MANAGE_PROJECTS: "rename or delete projects",
    RENAME: "rename this workspace",
    MANAGE_MEMBERS: "manage members",
    DELETE: "delete this workspace",
}


def validate_name(value: object, what: str = "name") -> str:
    """A workspace/project name: a string, stripped, 1..63 characters, no '/' or control characters."""
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    name = value.strip()
    if not name:
        raise BadRequest(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise BadRequest(f"{what} must be at most {MAX_NAME} characters (got {len(name)})")
    if "/" in name:
        raise BadRequest(f"{what} must not contain '/'")
    if any(unicodedata.category(c) in _CONTROL for c in name):
        raise BadRequest(f"{what} must not contain control characters")
    return name


def validate_role(value: object) -> str:
    if value not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)} (got {echo(value)})")
    return value  # type: ignore[return-value]


def validate_username(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("username must be a non-empty string")
    name = value.strip()
    if "/" in name or len(name) > 255:
        raise BadRequest(f"{echo(name)} is not a valid user name")
    return name


def require(role: str | None, action: str, workspace: str = "this workspace") -> None:
    """Raise Forbidden unless ``role`` (None: not a member) may perform ``action``."""
    if role is None:
        raise Forbidden(f"you are not a member of workspace {workspace!r}")
    if action not in PERMISSIONS.get(role, frozenset()):
        raise Forbidden(f"a workspace {role} cannot {_ACTION_WORDS.get(action, action)}")


def check_member_change(actor: str, actor_role: str | None, target: str, current: str | None,
                        new: str | None, owners: int) -> None:
    """May ``actor`` move ``target`` from role ``current`` to ``new``?

    ``current`` None: an invitation; ``new`` None: a removal; ``owners`` is the number of
    owners the workspace has now. Members may only remove themselves; admins manage
    members and admins, never owners; a workspace always keeps an owner.
    """
    if new is not None:
        validate_role(new)
    leaving = new is None and actor == target and actor_role is not None
    if not leaving:
        require(actor_role, MANAGE_MEMBERS)
        if actor_role != OWNER and OWNER in (current, new):
            raise Forbidden("only an owner can add, change or remove owners")
    if current == OWNER and new != OWNER and owners <= 1:
        raise Conflict("a workspace must keep at least one owner")


def personal_names(username: str) -> list[str]:
    """Candidate names for a user's personal workspace, best first."""
    clean = "".join("-" if c == "/" or unicodedata.category(c) in _CONTROL else c for c in username)
    clean = clean.strip() or "user"
    base = clean[:MAX_NAME].strip()
    out = [base]
    suffix_base = clean
    for i in range(1, 50):
        suffix = "-personal" if i == 1 else f"-personal-{i}"
        out.append(suffix_base[: MAX_NAME - len(suffix)] + suffix)
    return out
