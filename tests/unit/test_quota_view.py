"""Who may open a workspace's page: its members, and hub admins who are not members."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from gemhub.services.common.db import make_sessionmaker
from gemhub.services.common.errors import NotFound
from gemhub.services.quota.models import AuditEvent, Base
from gemhub.services.quota.workspaces import Workspaces


@pytest.fixture
def db(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'quota.sqlite'}")
    Base.metadata.create_all(engine)
    with make_sessionmaker(engine, AuditEvent)() as s:
        yield s


def test_a_hub_admin_sees_a_workspace_without_being_a_member(db, tmp_path):
    ws = Workspaces(db, "ada", str(tmp_path)).ensure_personal()
    assert Workspaces(db, "ada", str(tmp_path)).view(ws.id, hub_admin=False)[1] == "owner"
    seen, role = Workspaces(db, "root", str(tmp_path)).view(ws.id, hub_admin=True)
    assert seen.id == ws.id and role is None
    with pytest.raises(NotFound):  # not a member: as if it did not exist
        Workspaces(db, "bob", str(tmp_path)).view(ws.id, hub_admin=False)
    with pytest.raises(NotFound):
        Workspaces(db, "root", str(tmp_path)).view(ws.id + 100, hub_admin=True)
