"""Which of a user's workspaces a client's reference names: one rule for every service."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .errors import BadRequest
from .params import echo


def pick(workspaces: Iterable[Mapping[str, Any]], ref: object) -> Mapping[str, Any]:
    """The workspace among ``workspaces`` (the user's own) that ``ref`` names, by name first,
    then by id; None or blank: the personal one. 400 with the reason otherwise."""
    workspaces = list(workspaces)
    if ref is None or (isinstance(ref, str) and not ref.strip()):
        personal = [w for w in workspaces if w.get("personal")]
        if personal:
            return personal[0]
        raise BadRequest("name a workspace (you have no personal workspace)")
    text = str(ref).strip()
    for w in workspaces:
        if str(w["name"]) == text:
            return w
    for w in workspaces:
        if str(w["id"]) == text:
            return w
    raise BadRequest(f"you are not a member of a workspace {echo(text)}")
