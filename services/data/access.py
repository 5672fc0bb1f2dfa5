"""Who may see, edit and manage a dataset or model (pure).

``memberships`` maps the caller's workspace ids to their role there ("owner", "admin",
"member"), as the quota service reports it.

- public: everyone sees it (lists, reads, mounts); only members of its workspace edit it.
- workspace: members of its workspace see and edit it.
- private: its creator, and the owners and admins of its workspace.
Managing (visibility, description, delete) is for the creator and workspace owners/admins.
"""

from __future__ import annotations

from typing import Mapping, Protocol

from gemhub.services.common.errors import Forbidden, NotFound

MANAGERS = ("owner", "admin")


class AssetLike(Protocol):
    id: int
    kind: str
    name: str
    workspace_id: int
    visibility: str
    created_by: str


def _role(asset: AssetLike, memberships: Mapping[int, str]) -> str | None:
    return memberships.get(asset.workspace_id)


def can_see(asset: AssetLike, actor: str, memberships: Mapping[int, str]) -> bool:
    if asset.visibility == "public":
        return True
    role = _role(asset, memberships)
    if role is None:
        return False
    return asset.visibility == "workspace" or asset.created_by == actor or role in MANAGERS


def can_edit(asset: AssetLike, actor: str, memberships: Mapping[int, str]) -> bool:
    return _role(asset, memberships) is not None and can_see(asset, actor, memberships)


def can_manage(asset: AssetLike, actor: str, memberships: Mapping[int, str]) -> bool:
    role = _role(asset, memberships)
    return role is not None and (asset.created_by == actor or role in MANAGERS)


def require(asset: AssetLike | None, actor: str, memberships: Mapping[int, str], action: str = "see",
            ref: object = None) -> AssetLike:
    """The asset if the actor may do ``action`` (see/edit/manage); else 404 (unseen) or 403."""
    if asset is None or not can_see(asset, actor, memberships):
        # the same answer for "missing" and "not yours": existence is not leaked
        raise NotFound(f"no {getattr(asset, 'kind', 'dataset or model')} {ref if ref is not None else ''}"
                       " that you can see".replace("  ", " "))
    if action == "edit" and not can_edit(asset, actor, memberships):
        raise Forbidden(f"{asset.kind} {asset.name!r} belongs to another workspace: you can read it"
                        " but not change it")
    if action == "manage" and not can_manage(asset, actor, memberships):
        raise Forbidden(f"only its creator or an owner/admin of its workspace can change {asset.kind}"
                        f" {asset.name!r}")
    return asset
