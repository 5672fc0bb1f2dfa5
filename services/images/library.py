"""Images, versions and tags in the database under the sharing rules of datasets
(gemhub.services.data.access): public / workspace / private. Official images belong to
no workspace: everyone sees them, hub admins manage them.

Synchronous SQLAlchemy, one instance per request; every change adds an audit event to the
same transaction. No tornado here.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gemhub.services.common.audit import audit_event, utcnow
from gemhub.services.common.errors import BadRequest, Conflict, Forbidden, NotFound
from gemhub.services.common.workspaces import pick as pick_workspace
from gemhub.services.data import access

from . import names
from .models import Image, ImageVersion, Tag

# "preparing": its sources are being copied from the project (the queue does not take it yet)
ACTIVE = ("preparing", "queued", "building")
DONE = ("succeeded", "failed", "cancelled")


def iso(dt: datetime.datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite drops the zone; only UTC is stored
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.isoformat().replace("+00:00", "Z")


def version_json(v: ImageVersion, tags: Iterable[str] = ()) -> dict:
    base = v.base
    return {"id": v.id, "number": v.number, "state": v.state, "size_bytes": v.size_bytes,
            "digest": v.digest, "error": v.error, "note": v.note, "hints": list(v.hints or []),
            "dockerfile": v.dockerfile, "base": {"image_id": base.image_id, "name": base.image.name, "version": base.number}
            if base is not None else None, "project_id": v.context_project_id, "tags": sorted(tags),
            "pushed": v.pushed, "push_error": v.push_error, "rootfs": bool(v.rootfs),
            "created_by": v.created_by, "created": iso(v.created), "started": iso(v.started),
            "finished": iso(v.finished)}


class Library:
    """``workspaces``: the actor's workspaces as the quota service lists them
    ({id, name, personal, role}); ``hub_admin``: whether the actor is a hub admin."""

    def __init__(self, session: Session, actor: str, workspaces: list[Mapping[str, Any]], hub_admin: bool = False):
        self.db = session
        self.actor = actor
        self.workspaces = list(workspaces)
        self.roles = {int(w["id"]): str(w["role"]) for w in self.workspaces}
        self.hub_admin = hub_admin

    # -- rules ----------------------------------------------------------------------
    def can_see(self, image: Image) -> bool:
        return image.kind == "official" or access.can_see(image, self.actor, self.roles)

    def can_edit(self, image: Image) -> bool:
        """May build new versions and set tags."""
        if image.kind == "official":
            return self.hub_admin
        return access.can_edit(image, self.actor, self.roles)

    def can_manage(self, image: Image) -> bool:
        """May rename, change visibility, delete."""
        if image.kind == "official":
            return self.hub_admin
        return access.can_manage(image, self.actor, self.roles)

    def get(self, image_id: int, action: str = "see") -> Image:
        image = self.db.get(Image, image_id)
        if image is None or not self.can_see(image):
            # the same answer for "missing" and "not yours": existence is not leaked
            raise NotFound(f"no image {image_id} that you can see")
        if action == "edit" and not self.can_edit(image):
            raise Forbidden(f"you may use image {image.name!r} but not build or tag it"
                            + (" (official images are managed by hub admins)" if image.kind == "official" else ""))
        if action == "manage" and not self.can_manage(image):
            raise Forbidden(f"only its creator or an owner/admin of its workspace can change image {image.name!r}"
                            if image.kind != "official" else "official images are managed by hub admins")
        return image

    # -- json -----------------------------------------------------------------------
    def image_json(self, image: Image, with_versions: bool = False) -> dict:
        built = [v for v in image.versions if v.state == "succeeded"]
        tags: dict[int, list[str]] = {}
        for t in image.tags:
            tags.setdefault(t.version_id, []).append(t.name)
        if built:
            tags.setdefault(built[-1].id, []).append("latest")
        out = {"id": image.id, "name": image.name, "kind": image.kind, "official_key": image.official_key,
               "workspace_id": image.workspace_id, "workspace": image.workspace_name,
               "description": image.description, "visibility": image.visibility,
               "accelerators": list(image.accelerators or []), "cluster_only": bool(image.cluster_only),
               "created_by": image.created_by, "created": iso(image.created),
               "latest_version": built[-1].number if built else None,
               "size_bytes": built[-1].size_bytes if built else 0,
               "building": [v.number for v in image.versions if v.state in ACTIVE],
               "tags": {t.name: t.version.number for t in image.tags},
               "can_edit": self.can_edit(image), "can_manage": self.can_manage(image)}
        if with_versions:
            out["versions"] = [version_json(v, tags.get(v.id, ())) for v in image.versions]
        return out

    # -- reading --------------------------------------------------------------------
    def workspace(self, ref: object) -> Mapping[str, Any]:
        """One of the actor's workspaces by name or id (None: the personal one)."""
        return pick_workspace(self.workspaces, ref)

    def visible(self, workspace: object = None, usable: bool = False, kind: str | None = None) -> list[Image]:
        q = select(Image).where(or_(Image.kind == "official", Image.visibility == "public",
                                    Image.workspace_id.in_(list(self.roles))))
        if kind is not None:
            if kind not in ("official", "custom"):
                raise BadRequest(f"kind must be official or custom, not {kind!r}")
            q = q.where(Image.kind == kind)
        if workspace is not None:
            q = q.where(Image.workspace_id == int(self.workspace(workspace)["id"]))
        out = [i for i in self.db.scalars(q.order_by(Image.kind.desc(), Image.id)) if self.can_see(i)]
        if usable:
            out = [i for i in out if any(v.state == "succeeded" for v in i.versions)]
        return out

    def version(self, image: Image, number: int) -> ImageVersion:
        for v in image.versions:
            if v.number == number:
                return v
        raise NotFound(f"image {image.name!r} has no version {number}")

    def pick(self, choice: Mapping[str, Any], prefer_ws: int | None = None) -> tuple[Image, ImageVersion]:
        """A parsed choice (names.parse_choice) -> a visible image's built version."""
        if "id" in choice:
            image = self.get(int(choice["id"]))
        else:
            found = [i for i in self.visible() if i.name == choice["name"]]
            if len(found) > 1:
                found = ([i for i in found if i.workspace_id == prefer_ws]
                         or [i for i in found if i.workspace_id in self.roles]
                         or [i for i in found if i.kind == "official"] or found)
            if not found:
                raise NotFound(f"no image named {choice['name']!r} that you can see")
            if len(found) > 1:
                raise BadRequest(f"several images named {choice['name']!r} are visible to you: choose one by id")
            image = found[0]
        if "version" in choice:
            v = self.version(image, int(choice["version"]))
        elif "tag" in choice:
            tag = next((t for t in image.tags if t.name == choice["tag"]), None)
            if tag is None:
                raise NotFound(f"image {image.name!r} has no tag {choice['tag']!r}")
            v = tag.version
        else:
            built = [v for v in image.versions if v.state == "succeeded"]
            if not built:
                building = [v.number for v in image.versions if v.state in ACTIVE]
                raise Conflict(f"image {image.name!r} has no built version yet"
                               + (f" (version {building[0]} is being built)" if building else ""))
            v = built[-1]
        if v.state != "succeeded":
            raise Conflict(f"version {v.number} of image {image.name!r} is {v.state}; only built versions can be used")
        return image, v

    # -- images ---------------------------------------------------------------------
    def create(self, body: Mapping[str, Any]) -> Image:
        unknown = sorted(set(body) - {"name", "workspace", "description", "visibility"})
        if unknown:
            raise BadRequest(f"unknown key(s) {', '.join(unknown)} (known: name, workspace, description, visibility)")
        name = names.check_image_name(body.get("name"))
        ws = self.workspace(body.get("workspace"))
        image = Image(kind="custom", name=name, workspace_id=int(ws["id"]), workspace_name=str(ws["name"]),
                      description=names.check_description(body.get("description")),
                      visibility=names.check_visibility(body.get("visibility", "workspace")),
                      accelerators=[], cluster_only=0, created_by=self.actor, created=utcnow())
        self.db.add(image)
        try:
            self.db.flush()
        except IntegrityError:
            self.db.rollback()
            raise Conflict(f"an image named {name!r} already exists in workspace {ws['name']!r}") from None
        audit_event(self.db, self.actor, "image.create", f"image:{image.id}", name=name,
                    workspace_id=image.workspace_id, visibility=image.visibility)
        self.db.commit()
        return image

    def update(self, image_id: int, body: Mapping[str, Any]) -> Image:
        image = self.get(image_id, "manage")
        unknown = sorted(set(body) - {"name", "description", "visibility"})
        if unknown:
            raise BadRequest(f"cannot change {', '.join(unknown)} (only name, description, visibility)")
        changes: dict[str, Any] = {}
        if image.kind == "official" and set(body) - {"description"}:
            raise BadRequest("an official image's name and visibility come from the catalog (images/)")
        if "name" in body:
            changes["name"] = names.check_image_name(body["name"])
        if "description" in body:
            changes["description"] = names.check_description(body["description"])
        if "visibility" in body:
            # running environments keep their root: visibility gates new uses only
            changes["visibility"] = names.check_visibility(body["visibility"])
        for key, value in changes.items():
            setattr(image, key, value)
        audit_event(self.db, self.actor, "image.update", f"image:{image.id}", **changes)
        try:
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            raise Conflict(f"an image named {changes.get('name')!r} already exists in that workspace") from None
        return image

    def check_unused(self, image: Image, versions: list[ImageVersion], in_use: set[int]) -> None:
        """Refuse to delete versions that run (environments, jobs), build, or are a base."""
        for v in versions:
            if v.state in ACTIVE:
                raise Conflict(f"version {v.number} of {image.name!r} is {v.state}; cancel it first")
            if v.id in in_use:
                raise Conflict(f"version {v.number} of {image.name!r} is used by a running environment or job;"
                               " stop it first")
        ids = [v.id for v in versions]
        child = self.db.scalar(select(ImageVersion).where(ImageVersion.base_version_id.in_(ids),
                                                          ImageVersion.image_id != image.id).limit(1))
        if child is not None:
            raise Conflict(f"version {child.base.number} of {image.name!r} is the base of another image's version;"
                           " delete that first")

    # -- versions -------------------------------------------------------------------
    def next_number(self, image: Image) -> int:
        return (self.db.scalar(select(func.max(ImageVersion.number)).where(ImageVersion.image_id == image.id))
                or 0) + 1

    def add_version(self, image: Image, state: str = "queued", **fields: Any) -> ImageVersion:
        v = ImageVersion(image_id=image.id, number=self.next_number(image), state=state,
                         created_by=self.actor, created=utcnow(), hints=fields.pop("hints", []), **fields)
        image.versions.append(v)
        self.db.flush()
        audit_event(self.db, self.actor, "image.build", f"image:{image.id}", version=v.number,
                    base_version_id=v.base_version_id, project_id=v.context_project_id)
        self.db.commit()
        return v

    def set_tag(self, image_id: int, tag: str, number: object) -> Image:
        image = self.get(image_id, "edit")
        tag = names.check_tag(tag)
        if isinstance(number, bool) or not isinstance(number, int):
            raise BadRequest(f"version must be a whole number, not {number!r}")
        v = self.version(image, number)
        if v.state != "succeeded":
            raise Conflict(f"version {number} is {v.state}; only built versions can be tagged")
        existing = next((t for t in image.tags if t.name == tag), None)
        if existing is None:
            image.tags.append(Tag(name=tag, version_id=v.id))
        else:
            existing.version_id = v.id
        audit_event(self.db, self.actor, "image.tag", f"image:{image.id}", tag=tag, version=number)
        self.db.commit()
        self.db.refresh(image)
        return image

    def remove_tag(self, image_id: int, tag: str) -> None:
        image = self.get(image_id, "edit")
        existing = next((t for t in image.tags if t.name == tag), None)
        if existing is None:
            raise NotFound(f"image {image.name!r} has no tag {tag!r}")
        image.tags.remove(existing)
        audit_event(self.db, self.actor, "image.untag", f"image:{image.id}", tag=tag)
        self.db.commit()


def sync_official(session: Session, catalog: Mapping[str, Any], autobuild: bool = True) -> list[int]:
    """Record the catalog's images (name, description, accelerators) and queue a build of
    each autobuild image whose current recipe has no version; returns the queued ids."""
    queued = []
    by_key = {i.official_key: i for i in session.scalars(select(Image).where(Image.kind == "official"))}
    for key, entry in catalog.items():
        image = by_key.get(key)
        if image is None:
            image = Image(kind="official", name=key, official_key=key, workspace_id=None, workspace_name="",
                          visibility="public", created_by="platform", created=utcnow())
            session.add(image)
        image.description = f"{entry.title}\n\n{entry.description}".strip()
        image.accelerators = list(entry.accelerators)
        image.cluster_only = int(entry.cluster_only)
        session.flush()
        if not (autobuild and entry.autobuild) or entry.cluster_only:
            continue
        current = [v for v in image.versions if v.recipe == entry.recipe and v.state in ("succeeded", *ACTIVE)]
        if current:
            continue
        number = (session.scalar(select(func.max(ImageVersion.number)).where(ImageVersion.image_id == image.id))
                  or 0) + 1
        v = ImageVersion(image_id=image.id, number=number, state="queued", recipe=entry.recipe, hints=[],
                         note=f"recipe {entry.recipe[:16]} of images/{key}", created_by="platform", created=utcnow())
        session.add(v)
        session.flush()
        audit_event(session, "platform", "image.build", f"image:{image.id}", version=number, recipe=entry.recipe)
        queued.append(v.id)
    for key, image in by_key.items():
        if key not in catalog and image.description and not image.description.startswith("(removed"):
            image.description = f"(removed from the catalog) {image.description}"
    session.commit()
    return queued
