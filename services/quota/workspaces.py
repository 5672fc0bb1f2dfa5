"""Workspaces, members and projects in the database, under the rules of :mod:`.domain`.

Synchronous SQLAlchemy; every change adds an audit event to the same transaction.
"""

from __future__ import annotations

import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gemhub.services.common import params
from gemhub.services.common.audit import audit_event
from gemhub.services.common.errors import Conflict, NotFound

from . import domain, presets
from .domain import MEMBER, OWNER
from .models import Membership, Project, Workspace
from .paths import make_project_dirs


def iso(dt: datetime.datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.isoformat().replace("+00:00", "Z")


def workspace_json(ws: Workspace, role: str | None) -> dict:
    return {"id": ws.id, "name": ws.name, "personal": ws.personal, "role": role, "created": iso(ws.created),
            "max_runtime_minutes": ws.max_runtime_minutes, **preset_limits_json(ws)}


def preset_limits_json(ws: Workspace) -> dict:
    return {"allowed_presets": ws.allowed_presets, "custom_spec": bool(ws.custom_spec)}


def project_json(p: Project) -> dict:
    return {"id": p.id, "name": p.name, "workspace_id": p.workspace_id, "created": iso(p.created)}


def member_json(m: Membership) -> dict:
    return {"username": m.username, "role": m.role, "created": iso(m.created)}


def admin_workspace_json(ws: Workspace, members: list[Membership], project_count: int) -> dict:
    """A workspace as hub admins see it: no role of theirs, its members and project count."""
    return {**workspace_json(ws, None), "members": [member_json(m) for m in members],
            "project_count": project_count}


class Workspaces:
    """Operations of one request: ``session`` and the acting user's name."""

    def __init__(self, session: Session, actor: str, state_dir: str):
        self.db = session
        self.actor = actor
        self.state_dir = state_dir

    # -- reading -----------------------------------------------------------------------
    def role_in(self, ws: Workspace, username: str | None = None) -> str | None:
        return self.db.scalar(
            select(Membership.role).where(Membership.workspace_id == ws.id,
                                          Membership.username == (username or self.actor))
        )

    def get(self, ws_id: int, action: str = domain.VIEW, label: str | None = None) -> tuple[Workspace, str]:
        """The workspace and the actor's role in it: 404 if none *or not a member* (the same
        answer, so ids and names of other workspaces are not revealed), 403 if the actor's
        role does not allow ``action``. ``label`` names it in that 404 (default: the id)."""
        ws = self.db.get(Workspace, ws_id)
        role = self.role_in(ws) if ws is not None else None
        if role is None:
            raise NotFound(f"workspace {label or ws_id} does not exist")
        domain.require(role, action, ws.name)
        return ws, role

    def view(self, ws_id: int, hub_admin: bool) -> tuple[Workspace, str | None]:
        """The workspace and the actor's role for its page: a hub admin who is not a member
        still sees it (role None), to set its limits; anyone else needs a role."""
        if hub_admin:
            ws = self.db.get(Workspace, ws_id)
            if ws is None:
                raise NotFound(f"workspace {ws_id} does not exist")
            return ws, self.role_in(ws)
        return self.get(ws_id)

    def mine(self, offset: int = 0, limit: int = 200) -> tuple[list[tuple[Workspace, str]], int]:
        where = Membership.username == self.actor
        total = self.db.scalar(select(func.count()).select_from(Membership).where(where)) or 0
        rows = self.db.execute(
            select(Workspace, Membership.role).join(Membership).where(where)
            .order_by(Workspace.personal_owner.is_(None), Workspace.id).offset(offset).limit(limit)
        ).all()
        return [(ws, role) for ws, role in rows], total

    def every(self, search: str = "", members: tuple[str, ...] = (), offset: int = 0,
              limit: int = 200) -> tuple[list[Workspace], int]:
        """Every workspace, for hub admins (the caller checked): ``search`` matches a part of
        its name or of a member's name; ``members`` keeps those one of them belongs to."""
        q = select(Workspace)
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            q = q.where(or_(Workspace.name.ilike(pattern, escape="\\"), Workspace.id.in_(
                select(Membership.workspace_id).where(Membership.username.ilike(pattern, escape="\\")))))
        if members:
            q = q.where(Workspace.id.in_(
                select(Membership.workspace_id).where(Membership.username.in_(members))))
        total = self.db.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(self.db.scalars(q.order_by(Workspace.id).offset(offset).limit(limit)))
        return rows, total

    def members_of(self, ids: list[int]) -> dict[int, list[Membership]]:
        """Members of several workspaces in one query."""
        out: dict[int, list[Membership]] = {i: [] for i in ids}
        for m in self.db.scalars(select(Membership).where(Membership.workspace_id.in_(ids)).order_by(Membership.id)):
            out[m.workspace_id].append(m)
        return out

    def project_counts(self, ids: list[int]) -> dict[int, int]:
        rows = self.db.execute(select(Project.workspace_id, func.count()).where(Project.workspace_id.in_(ids))
                               .group_by(Project.workspace_id)).all()
        return {i: 0 for i in ids} | {ws_id: n for ws_id, n in rows}

    def members(self, ws: Workspace) -> list[Membership]:
        return list(self.db.scalars(
            select(Membership).where(Membership.workspace_id == ws.id).order_by(Membership.id)))

    def member(self, ws: Workspace, username: str) -> Membership:
        m = self.db.scalar(select(Membership).where(Membership.workspace_id == ws.id,
                                                    Membership.username == username))
        if m is None:
            raise NotFound(f"{params.echo(username)} is not a member of workspace {ws.name!r}")
        return m

    def projects(self, ws: Workspace, offset: int = 0, limit: int = 200) -> tuple[list[Project], int]:
        where = Project.workspace_id == ws.id
        total = self.db.scalar(select(func.count()).select_from(Project).where(where)) or 0
        items = list(self.db.scalars(select(Project).where(where).order_by(Project.id).offset(offset).limit(limit)))
        return items, total

    def find_mine(self, name: str, action: str = domain.VIEW) -> tuple[Workspace, str]:
        """One of the actor's own workspaces by name (never an id, never anyone else's)."""
        ws = self.db.scalar(select(Workspace).join(Membership, Membership.workspace_id == Workspace.id)
                            .where(Workspace.name == name, Membership.username == self.actor))
        if ws is None:
            raise NotFound(f"you are not a member of a workspace named {params.echo(name)}")
        return self.get(ws.id, action)

    def project_by_id(self, ws: Workspace, project_id: int) -> Project:
        p = self.db.get(Project, project_id)
        if p is None or p.workspace_id != ws.id:
            raise NotFound(f"workspace {ws.name!r} has no project {project_id}")
        return p

    def project_by_name(self, ws: Workspace, name: str) -> Project:
        p = self.db.scalar(select(Project).where(Project.workspace_id == ws.id, Project.name == name))
        if p is None:
            raise NotFound(f"workspace {ws.name!r} has no project named {params.echo(name)}")
        return p

    # -- the personal workspace --------------------------------------------------------
    def ensure_personal(self) -> Workspace:
        """The actor's personal workspace, made (with project "default") the first time."""
        ws = self.db.scalar(select(Workspace).where(Workspace.personal_owner == self.actor))
        if ws is not None:
            return ws
        for name in domain.personal_names(self.actor):
            if self.db.scalar(select(Workspace.id).where(Workspace.name == name)) is not None:
                continue
            try:
                ws = self._create(name, personal=True)
                self.db.commit()
                return ws
            except IntegrityError:
                self.db.rollback()
                ws = self.db.scalar(select(Workspace).where(Workspace.personal_owner == self.actor))
                if ws is not None:  # another request made it first
                    return ws
        raise Conflict(f"no free name for the personal workspace of {self.actor!r}")

    def _create(self, name: str, personal: bool = False) -> Workspace:
        ws = Workspace(name=name, personal_owner=self.actor if personal else None)
        self.db.add(ws)
        self.db.flush()
        self.db.add(Membership(workspace_id=ws.id, username=self.actor, role=OWNER))
        project = Project(workspace_id=ws.id, name=domain.DEFAULT_PROJECT)
        self.db.add(project)
        self.db.flush()
        audit_event(self.db, self.actor, "workspace.create", f"workspace:{ws.id}", name=name, personal=personal)
        audit_event(self.db, self.actor, "project.create", f"project:{project.id}",
                    workspace_id=ws.id, name=project.name)
        make_project_dirs(self.state_dir, ws.id, project.id)
        return ws

    # -- workspaces --------------------------------------------------------------------
    def _name_free(self, name: str, except_id: int | None = None) -> None:
        other = self.db.scalar(select(Workspace.id).where(Workspace.name == name))
        if other is not None and other != except_id:
            raise Conflict(f"a workspace named {name!r} already exists")

    def create(self, name: object) -> Workspace:
        name = domain.validate_name(name, "workspace name")
        self._name_free(name)
        try:
            ws = self._create(name)
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            raise Conflict(f"a workspace named {name!r} already exists") from None
        return ws

    def rename(self, ws_id: int, name: object) -> Workspace:
        ws, _ = self.get(ws_id, domain.RENAME)
        name = domain.validate_name(name, "workspace name")
        if name == ws.name:
            return ws
        self._name_free(name, ws.id)
        old = ws.name
        ws.name = name
        audit_event(self.db, self.actor, "workspace.rename", f"workspace:{ws.id}", old=old, new=name)
        self._commit_unique(f"a workspace named {name!r} already exists")
        return ws

    def set_runtime_limit(self, ws_id: int, minutes: int | None) -> Workspace:
        """Set how long an environment of the workspace may run (the caller checked that the
        actor is a platform administrator, who need not be a member)."""
        ws = self.db.get(Workspace, ws_id)
        if ws is None:
            raise NotFound(f"workspace {ws_id} does not exist")
        if ws.max_runtime_minutes != minutes:
            audit_event(self.db, self.actor, "workspace.runtime_limit", f"workspace:{ws.id}",
                        old=ws.max_runtime_minutes, new=minutes)
            ws.max_runtime_minutes = minutes
            self.db.commit()
        return ws

    def set_preset_limits(self, ws_id: int, allowed_presets: object = ..., custom_spec: object = ...,
                          known_presets: tuple[str, ...] = ()) -> Workspace:
        """Hub admins only (the caller checks): membership is not needed. ``...`` = unchanged."""
        ws = self.db.get(Workspace, ws_id)
        if ws is None:
            raise NotFound(f"workspace {ws_id} does not exist")
        new = {"allowed_presets": ws.allowed_presets, "custom_spec": bool(ws.custom_spec)}
        if allowed_presets is not ...:
            new["allowed_presets"] = presets.validate_allowed_presets(allowed_presets, known_presets)
        if custom_spec is not ...:
            new["custom_spec"] = presets.validate_custom_spec(custom_spec)
        old = preset_limits_json(ws)
        if new != old:
            ws.allowed_presets, ws.custom_spec = new["allowed_presets"], new["custom_spec"]
            audit_event(self.db, self.actor, "workspace.presets", f"workspace:{ws.id}", old=old, new=new)
            self.db.commit()
        return ws

    def delete(self, ws_id: int) -> None:
        ws, _ = self.get(ws_id, domain.DELETE)
        if ws.personal:
            raise Conflict("a personal workspace cannot be deleted")
        audit_event(self.db, self.actor, "workspace.delete", f"workspace:{ws.id}", name=ws.name)
        self.db.delete(ws)
        self.db.commit()

    def _commit_unique(self, message: str) -> None:
        try:
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            raise Conflict(message) from None

    # -- members -----------------------------------------------------------------------
    def _owners(self, ws: Workspace) -> int:
        return self.db.scalar(select(func.count()).select_from(Membership).where(
            Membership.workspace_id == ws.id, Membership.role == OWNER)) or 0

    def add_member(self, ws_id: int, username: object, role: object) -> Membership:
        ws, my_role = self.get(ws_id)
        username = domain.validate_username(username)
        role = domain.validate_role(role if role is not None else MEMBER)
        if self.role_in(ws, username) is not None:
            domain.require(my_role, domain.MANAGE_MEMBERS)
            raise Conflict(f"{username!r} is already a member of workspace {ws.name!r}")
        domain.check_member_change(self.actor, my_role, username, None, role, self._owners(ws))
        m = Membership(workspace_id=ws.id, username=username, role=role)
        self.db.add(m)
        audit_event(self.db, self.actor, "member.add", f"workspace:{ws.id}", username=username, role=role)
        self._commit_unique(f"{username!r} is already a member of workspace {ws.name!r}")
        return m

    def change_member(self, ws_id: int, username: str, role: object) -> Membership:
        ws, my_role = self.get(ws_id)
        m = self.member(ws, username)
        role = domain.validate_role(role)
        domain.check_member_change(self.actor, my_role, username, m.role, role, self._owners(ws))
        if role != m.role:
            audit_event(self.db, self.actor, "member.change", f"workspace:{ws.id}",
                        username=username, old=m.role, new=role)
            m.role = role
            self.db.commit()
        return m

    def check_remove_member(self, ws_id: int, username: str) -> tuple[Workspace, Membership]:
        """Whether the actor may remove ``username`` (4xx otherwise); changes nothing."""
        ws, my_role = self.get(ws_id)
        m = self.member(ws, username)
        domain.check_member_change(self.actor, my_role, username, m.role, None, self._owners(ws))
        return ws, m

    def remove_member(self, ws_id: int, username: str) -> None:
        ws, m = self.check_remove_member(ws_id, username)
        audit_event(self.db, self.actor, "member.remove", f"workspace:{ws.id}", username=username, role=m.role)
        self.db.delete(m)
        self.db.commit()

    # -- projects ----------------------------------------------------------------------
    def _project_name_free(self, ws: Workspace, name: str, except_id: int | None = None) -> None:
        other = self.db.scalar(select(Project.id).where(Project.workspace_id == ws.id, Project.name == name))
        if other is not None and other != except_id:
            raise Conflict(f"a project named {name!r} already exists in workspace {ws.name!r}")

    def create_project(self, ws_id: int, name: object) -> Project:
        ws, _ = self.get(ws_id, domain.CREATE_PROJECT)
        name = domain.validate_name(name, "project name")
        self._project_name_free(ws, name)
        p = Project(workspace_id=ws.id, name=name)
        self.db.add(p)
        try:
            self.db.flush()
        except IntegrityError:
            self.db.rollback()
            raise Conflict(f"a project named {name!r} already exists in workspace {ws.name!r}") from None
        audit_event(self.db, self.actor, "project.create", f"project:{p.id}", workspace_id=ws.id, name=name)
        make_project_dirs(self.state_dir, ws.id, p.id)
        self.db.commit()
        return p

    def rename_project(self, ws_id: int, project_id: int, name: object) -> Project:
        ws, _ = self.get(ws_id, domain.MANAGE_PROJECTS)
        p = self.project_by_id(ws, int(project_id))
        name = domain.validate_name(name, "project name")
        if name == p.name:
            return p
        self._project_name_free(ws, name, p.id)
        audit_event(self.db, self.actor, "project.rename", f"project:{p.id}",
                    workspace_id=ws.id, old=p.name, new=name)
        p.name = name
        self._commit_unique(f"a project named {name!r} already exists in workspace {ws.name!r}")
        return p

    def delete_project(self, ws_id: int, project_id: int) -> None:
        ws, _ = self.get(ws_id, domain.MANAGE_PROJECTS)
        p = self.project_by_id(ws, int(project_id))
        # The files under state/workspaces/<ws>/projects/<p>/ are kept (ids are never reused).
        audit_event(self.db, self.actor, "project.delete", f"project:{p.id}", workspace_id=ws.id, name=p.name)
        self.db.delete(p)
        self.db.commit()
