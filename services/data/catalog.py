"""Datasets and models in the database and on disk, under the rules of access.py.

Synchronous SQLAlchemy, one instance per request (like the quota service's Workspaces);
every change adds an audit event to the same transaction.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gemhub.services.common import params
from gemhub.services.common.audit import audit_event, utcnow
from gemhub.services.common.errors import BadRequest, Conflict, NotFound
from gemhub.services.common.workspaces import pick as pick_workspace
from gemhub.spawner import layout

from . import access, files, names
from .models import Asset, Version


def iso(dt: datetime.datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite drops the zone; only UTC is stored
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.isoformat().replace("+00:00", "Z")


def version_json(v: Version) -> dict:
    return {"number": v.number, "state": v.state, "size_bytes": v.size_bytes, "file_count": v.file_count,
            "note": v.note, "source": v.source, "created_by": v.created_by, "created": iso(v.created),
            "published": iso(v.published)}


class Catalog:
    """``workspaces``: the actor's workspaces as the quota service lists them
    ({id, name, personal, role})."""

    def __init__(self, session: Session, actor: str, workspaces: list[Mapping[str, Any]], state_dir: str):
        self.db = session
        self.actor = actor
        self.workspaces = list(workspaces)
        self.roles = {int(w["id"]): str(w["role"]) for w in self.workspaces}
        self.state_dir = state_dir

    # -- json -------------------------------------------------------------------------
    def asset_json(self, a: Asset, with_versions: bool = False) -> dict:
        published = [v for v in a.versions if v.state == "published"]
        out = {"id": a.id, "kind": a.kind, "name": a.name, "workspace_id": a.workspace_id,
               "workspace": a.workspace_name, "description": a.description, "tags": list(a.tags or []),
               "visibility": a.visibility, "created_by": a.created_by, "created": iso(a.created),
               "latest_version": published[-1].number if published else None,
               "draft": next((v.number for v in a.versions if v.state == "draft"), None),
               "can_edit": access.can_edit(a, self.actor, self.roles),
               "can_manage": access.can_manage(a, self.actor, self.roles)}
        if with_versions:
            out["versions"] = [version_json(v) for v in a.versions]
        return out

    # -- paths ------------------------------------------------------------------------
    def draft_dir(self, a: Asset, v: Version) -> Path:
        return layout.asset_draft_dir(self.state_dir, a.kind, a.id, v.number)

    def version_dir(self, a: Asset, v: Version) -> Path:
        if v.state == "draft":
            return self.draft_dir(a, v)
        return layout.asset_version_dir(self.state_dir, a.kind, a.id, v.number)

    # -- reading ----------------------------------------------------------------------
    def workspace(self, ref: object) -> Mapping[str, Any]:
        """One of the actor's workspaces by id or name (None: the personal one)."""
        return pick_workspace(self.workspaces, ref)

    def visible(self, kind: str | None = None, workspace: object = None, mountable: bool = False) -> list[Asset]:
        q = select(Asset).where(or_(Asset.visibility == "public", Asset.workspace_id.in_(list(self.roles))))
        if kind is not None:
            q = q.where(Asset.kind == names.check_kind(kind))
        if workspace is not None:
            q = q.where(Asset.workspace_id == int(self.workspace(workspace)["id"]))
        out = [a for a in self.db.scalars(q.order_by(Asset.id)) if access.can_see(a, self.actor, self.roles)]
        if mountable:
            out = [a for a in out if any(v.state == "published" for v in a.versions)]
        return out

    def get(self, asset_id: int, action: str = "see") -> Asset:
        a = self.db.get(Asset, asset_id)
        return access.require(a, self.actor, self.roles, action, asset_id)  # type: ignore[return-value]

    def version(self, a: Asset, number: int) -> Version:
        for v in a.versions:
            if v.number == number:
                return v
        raise NotFound(f"{a.kind} {a.name!r} has no version {number}")

    def draft(self, asset_id: int, number: int) -> tuple[Asset, Version]:
        a = self.get(asset_id, "edit")
        v = self.version(a, number)
        if v.state != "draft":
            raise Conflict(f"version {number} of {a.name!r} is published and can never change;"
                           " create a new version")
        return a, v

    # -- assets -----------------------------------------------------------------------
    def create(self, body: Mapping[str, Any]) -> Asset:
        kind = names.check_kind(body.get("kind", "dataset"))
        name = names.check_asset_name(body.get("name"), kind)
        ws = self.workspace(body.get("workspace"))
        a = Asset(kind=kind, name=name, workspace_id=int(ws["id"]), workspace_name=str(ws["name"]),
                  description=names.check_description(body.get("description")),
                  tags=names.check_tags(body.get("tags")),
                  visibility=names.check_visibility(body.get("visibility", "workspace")),
                  created_by=self.actor, created=utcnow())
        self.db.add(a)
        try:
            self.db.flush()
        except IntegrityError:
            self.db.rollback()
            raise Conflict(f"a {kind} named {name!r} already exists in workspace {ws['name']!r}") from None
        audit_event(self.db, self.actor, f"{kind}.create", f"asset:{a.id}", name=name,
                    workspace_id=a.workspace_id, visibility=a.visibility)
        self.db.commit()
        return a

    def update(self, asset_id: int, body: Mapping[str, Any]) -> Asset:
        a = self.get(asset_id, "manage")
        unknown = sorted(set(body) - {"name", "description", "tags", "visibility"})
        if unknown:
            raise BadRequest(f"cannot change {', '.join(unknown)} (only name, description, tags, visibility)")
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = names.check_asset_name(body["name"], a.kind)
        if "description" in body:
            changes["description"] = names.check_description(body["description"])
        if "tags" in body:
            changes["tags"] = names.check_tags(body["tags"])
        if "visibility" in body:
            # running environments keep their bind mounts: visibility only gates new ones
            changes["visibility"] = names.check_visibility(body["visibility"])
        for key, value in changes.items():
            setattr(a, key, value)
        audit_event(self.db, self.actor, f"{a.kind}.update", f"asset:{a.id}", **changes)
        try:
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            raise Conflict(f"a {a.kind} named {changes.get('name')!r} already exists in that workspace") from None
        return a

    def delete(self, asset_id: int) -> None:
        """Delete a dataset/model that was never published (with its draft). Published
        versions may be mounted by running environments and are never deleted."""
        a = self.get(asset_id, "manage")
        if any(v.state == "published" for v in a.versions):
            raise Conflict(f"{a.kind} {a.name!r} has published versions, which environments may mount and"
                           " which never change; make it private instead")
        audit_event(self.db, self.actor, f"{a.kind}.delete", f"asset:{a.id}", name=a.name)
        self.db.delete(a)
        self.db.commit()
        files.remove_tree(layout.asset_dir(self.state_dir, a.kind, a.id))

    def discard_draft(self, asset_id: int, number: int) -> None:
        """Drop a draft: its row, then its folder (a crash in between leaves a folder without
        a row, which recovery.py removes at the next start)."""
        a, v = self.draft(asset_id, number)
        draft = self.draft_dir(a, v)
        with files.no_sftp_sessions(draft, "discard"):
            audit_event(self.db, self.actor, f"{a.kind}.discard", f"asset:{a.id}", version=v.number)
            self.db.delete(v)
            self.db.commit()
            files.remove_tree(draft)

    # -- versions ---------------------------------------------------------------------
    def _next_number(self, a: Asset) -> int:
        return (self.db.scalar(select(func.max(Version.number)).where(Version.asset_id == a.id)) or 0) + 1

    def new_draft(self, asset_id: int, note: object = "") -> tuple[Asset, Version]:
        a = self.get(asset_id, "edit")
        if any(v.state == "draft" for v in a.versions):
            n = next(v.number for v in a.versions if v.state == "draft")
            raise Conflict(f"{a.name!r} already has a draft (version {n}); publish it first")
        v = Version(number=self._next_number(a), state="draft",
                    note=names.check_description(note), created_by=self.actor, created=utcnow(),
                    size_bytes=0, file_count=0)
        a.versions.append(v)
        self.db.flush()
        files.make_draft(self.draft_dir(a, v))
        audit_event(self.db, self.actor, f"{a.kind}.draft", f"asset:{a.id}", version=v.number)
        self.db.commit()
        return a, v

    def count(self, v: Version, delta: files.Usage, sign: int = 1) -> None:
        """Keep the version's file and byte counters in step with a change on disk."""
        v.file_count = max(0, v.file_count + sign * delta.files)
        v.size_bytes = max(0, v.size_bytes + sign * delta.bytes)

    def publish(self, asset_id: int, number: int) -> tuple[Asset, Version]:
        a, v = self.draft(asset_id, number)
        draft = self.draft_dir(a, v)
        with files.no_sftp_sessions(draft):
            files.drop_leftovers(draft)
            held = files.usage(draft)
            if held.files == 0:
                raise BadRequest("the draft is empty: upload or extract something first")
            files.publish(draft, layout.asset_version_dir(self.state_dir, a.kind, a.id, v.number))
        v.state, v.published = "published", utcnow()
        v.file_count, v.size_bytes = held.files, held.bytes
        audit_event(self.db, self.actor, f"{a.kind}.publish", f"asset:{a.id}", version=v.number,
                    files=held.files, bytes=held.bytes)
        self.db.commit()
        return a, v

    def from_output(self, asset_id: int, output: Path, path: str, label: Mapping[str, Any],
                    note: object = "") -> Version:
        """A new published version holding a copy of ``path`` in a project's ``output``
        (copied without following links: files.copy_out). Nothing is left on failure."""
        a = self.get(asset_id, "edit")
        number = self._next_number(a)
        tmp = layout.asset_draft_dir(self.state_dir, a.kind, a.id, number)
        held = files.copy_out(output, path, tmp)
        try:
            files.publish(tmp, layout.asset_version_dir(self.state_dir, a.kind, a.id, number))
        except BaseException:
            files.remove_tree(tmp)
            raise
        v = Version(number=number, state="published", note=names.check_description(note),
                    source=dict(label), created_by=self.actor, created=utcnow(), published=utcnow(),
                    size_bytes=held.bytes, file_count=held.files)
        a.versions.append(v)
        audit_event(self.db, self.actor, f"{a.kind}.save_output", f"asset:{a.id}", version=number, **label)
        self.db.commit()
        return v

    # -- mounts -----------------------------------------------------------------------
    def resolve(self, kind: str, choice: Any, prefer_ws: int | None) -> tuple[Asset, Version]:
        """A mount choice ({"id"|"name", "version"}) -> a visible asset's published version."""
        if not isinstance(choice, Mapping):
            raise BadRequest(f"a {kind} choice must be an object with id or name and version, not {params.echo(choice)}")
        if choice.get("id") is not None:
            a = self.get(params.id_arg(choice["id"], f"{kind} id"))
            if a.kind != kind:
                raise BadRequest(f"{a.name!r} (id {a.id}) is a {a.kind}, not a {kind}")
        elif choice.get("name") is not None:
            name = names.check_asset_name(choice["name"], kind)
            found = [a for a in self.visible(kind) if a.name == name]
            if len(found) > 1:
                found = [a for a in found if a.workspace_id == prefer_ws] or \
                        [a for a in found if a.workspace_id in self.roles] or found
            if not found:
                raise NotFound(f"no {kind} named {name!r} that you can see")
            if len(found) > 1:
                raise BadRequest(f"several {kind}s named {name!r} are visible to you: choose one by id")
            a = found[0]
        else:
            raise BadRequest(f"a {kind} choice needs an id or a name")
        wanted = choice.get("version")
        published = [v for v in a.versions if v.state == "published"]
        if wanted in (None, "", "latest"):
            if not published:
                raise BadRequest(f"{kind} {a.name!r} has no published version yet")
            return a, published[-1]
        v = self.version(a, params.id_arg(wanted, "version"))
        if v.state != "published":
            raise BadRequest(f"version {v.number} of {a.name!r} is a draft; only published versions mount")
        return a, v
