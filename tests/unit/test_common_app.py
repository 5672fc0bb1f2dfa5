"""Service base: database setup, migrations, audit events, OpenAPI document, death with the hub."""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from sqlalchemy import inspect, text

from gemhub.services.common.app import GemService, die_with_parent
from gemhub.services.common.audit import audit_event
from gemhub.services.common.db import make_engine, make_sessionmaker, run_migrations
from gemhub.services.common.openapi import OpenAPIRegistry
from gemhub.services.quota.app import QuotaService
from gemhub.services.quota.models import AuditEvent


def _head() -> str:
    """The newest quota migration (every helper's migration moves it)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(QuotaService.migrations_dir))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_sqlite_wal_foreign_keys_and_migrations(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/sub/q.sqlite")
    run_migrations(engine, QuotaService.migrations_dir)
    run_migrations(engine, QuotaService.migrations_dir)  # idempotent
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert c.execute(text("select version_num from alembic_version")).scalar() == _head()
    assert {"workspaces", "memberships", "projects", "audit_events"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_audit_event_is_utc(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/a.sqlite")
    run_migrations(engine, QuotaService.migrations_dir)
    Session = make_sessionmaker(engine, AuditEvent)
    with Session() as s:
        ev = audit_event(s, "alice", "workspace.create", "workspace:1", name="w")
        s.commit()
        assert ev.created.tzinfo is not None and ev.created.utcoffset() == datetime.timedelta(0)
    with Session() as s:
        row = s.query(AuditEvent).one()
        assert (row.actor, row.action, row.target, row.detail) == ("alice", "workspace.create", "workspace:1",
                                                                   {"name": "w"})
    with make_sessionmaker(engine)() as s, pytest.raises(RuntimeError):
        audit_event(s, "a", "b", "c")
    engine.dispose()


def test_every_trait_is_documented_and_configurable():
    for cls in (GemService, QuotaService):
        for name, trait in cls.class_traits(config=True).items():
            assert trait.help, f"{cls.__name__}.{name} has no help"


def test_traits_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/x/services/quota/")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "quota")
    app = QuotaService(state_dir=str(tmp_path))
    assert app.base_url == "/x/services/quota/"
    assert app.db_url == f"sqlite:///{tmp_path}/db/quota.sqlite"


def test_openapi_document():
    r = OpenAPIRegistry("t")
    r.add("post", "/things/{thing_id}", "make", request={"type": "object"}, status=201)
    doc = r.document("/api/v1")
    op = doc["paths"]["/things/{thing_id}"]["post"]
    assert op["parameters"][0]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    # every answer a handler can give: success, the common errors, 413 for a body
    assert set(op["responses"]) == {"201", "400", "401", "403", "404", "413", "503"}
    assert doc["servers"] == [{"url": "/api/v1"}]
    quota = QuotaService().openapi().document("/services/quota/api/v1")
    ids = [op["operationId"] for p in quota["paths"].values() for op in p.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("service", ["quota", "data", "ssh", "images"])
def test_service_documents_are_valid_for_the_version_they_declare(service):
    from importlib import import_module

    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    app = import_module(f"gemhub.services.{service}.app")
    cls = next(v for v in vars(app).values() if isinstance(v, type) and getattr(v, "name", None) == service)
    doc = cls().openapi().document(f"/services/{service}/api/v1")
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)
    # JSON Schema 2020-12 only: 3.0's "nullable" means nothing in 3.1
    assert '"nullable"' not in __import__("json").dumps(doc)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_child_dies_with_its_parent(tmp_path):
    """A parent starts a child that calls die_with_parent, then is killed -9: the child goes too."""
    pidfile = tmp_path / "child.pid"
    child_code = (
        "from gemhub.services.common.app import die_with_parent; import os, time; "
        f"assert die_with_parent(); open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    parent_code = textwrap.dedent(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {child_code!r}])
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text()):
            assert time.monotonic() < deadline, "child did not start"
            time.sleep(0.05)
        child = psutil.Process(int(pidfile.read_text()))
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        gone, _ = psutil.wait_procs([child], timeout=10)
        assert gone, "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_database_url_and_cookie_secret_come_from_the_environment(monkeypatch, tmp_path):
    """A service on Kubernetes gets its secrets from its Secret-backed environment, never argv."""
    monkeypatch.setenv("GEMHUB_DATABASE_URL", "postgresql://quota:pw@db:5432/gemhub_quota")
    monkeypatch.setenv("GEMHUB_COOKIE_SECRET", "ab" * 32)
    app = QuotaService(state_dir=str(tmp_path))
    assert app.db_url == "postgresql://quota:pw@db:5432/gemhub_quota"
    assert app.cookie_secret == "ab" * 32
    monkeypatch.delenv("GEMHUB_DATABASE_URL")
    monkeypatch.delenv("GEMHUB_COOKIE_SECRET")
    app = QuotaService(state_dir=str(tmp_path))
    assert app.db_url == f"sqlite:///{tmp_path}/db/quota.sqlite"
    assert len(app.cookie_secret) == 64 and app.cookie_secret != QuotaService(state_dir=str(tmp_path)).cookie_secret
