"""Consistent copies of the platform's databases while it runs, and their restore.

- SQLite: the online backup API (``sqlite3.Connection.backup``) copies a consistent
  snapshot page by page while the services keep writing (WAL mode);
- PostgreSQL: ``pg_dump --format=custom`` (one consistent snapshot per database), restored
  with ``pg_restore --no-owner --no-acl`` into an empty database.

A password in a database URL never reaches a command line: ``pg_dump``/``pg_restore`` get
a URL without it and the password in ``PGPASSWORD``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class DumpError(RuntimeError):
    """A database could not be copied or restored; the message says which and why."""


@dataclass(frozen=True)
class Database:
    """One database of the platform: ``name`` (jupyterhub, quota, ...) at ``url``."""

    name: str
    url: str

    @property
    def engine(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def dump_name(self) -> str:
        return f"{self.name}.sqlite" if self.engine == "sqlite" else f"{self.name}.pgdump"

    def sqlite_path(self) -> Path:
        return Path(make_url(self.url).database or "")


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """(a libpq connection URI without the password, environment carrying the password)."""
    parsed: URL = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise DumpError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    # URL.set() keeps a part given as None: build the URL anew, without the password
    plain = URL.create("postgresql", username=parsed.username, host=parsed.host, port=parsed.port,
                       database=parsed.database, query=parsed.query)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DumpError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return path


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise DumpError(f"{what}: {proc.stdout.strip()[-2000:]}")


def dump(db: Database, dest_dir: Path) -> Path:
    """Copy ``db`` into ``dest_dir`` (a consistent snapshot); returns the file written."""
    out = dest_dir / db.dump_name
    if db.engine == "sqlite":
        src_path = db.sqlite_path()
        if not src_path.is_file():
            raise DumpError(f"{db.name}: no database file at {src_path}")
        src = sqlite3.connect(src_path, timeout=30)
        dst = sqlite3.connect(out)
        try:
            with dst:
                src.backup(dst)
            if dst.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise DumpError(f"{db.name}: the copy of {src_path} does not check out")
        finally:
            dst.close()
            src.close()
    elif db.engine == "postgresql":
        uri, env = libpq(db.url)
        _run([_tool("pg_dump"), "--format=custom", f"--file={out}", f"--dbname={uri}"], env,
             f"pg_dump of the {db.name} database")
    else:
        raise DumpError(f"{db.name}: {db.engine} databases cannot be backed up")
    os.chmod(out, 0o600)
    return out


def is_empty(db: Database) -> bool:
    """Whether ``db`` holds no tables yet (a fresh database to restore into)."""
    if db.engine == "sqlite":
        path = db.sqlite_path()
        if not path.exists():
            return True
        con = sqlite3.connect(path)
        try:
            return con.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] == 0
        finally:
            con.close()
    from sqlalchemy import create_engine, inspect

    engine = create_engine(db.url)
    try:
        return not inspect(engine).get_table_names()
    finally:
        engine.dispose()


def restore(db: Database, dump_file: Path) -> None:
    """Load ``dump_file`` (made by :func:`dump`) into ``db``, which must be empty."""
    if not is_empty(db):
        raise DumpError(f"the {db.name} database is not empty; restore needs a fresh one")
    if db.engine == "sqlite":
        if dump_file.suffix != ".sqlite":
            raise DumpError(f"the backup of {db.name} is a PostgreSQL dump; the configuration names SQLite")
        target = db.sqlite_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (target, target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
            leftover.unlink(missing_ok=True)
        src = sqlite3.connect(dump_file)
        dst = sqlite3.connect(target)
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
            src.close()
        os.chmod(target, 0o600)
    elif db.engine == "postgresql":
        if dump_file.suffix != ".pgdump":
            raise DumpError(f"the backup of {db.name} is a SQLite file; the configuration names PostgreSQL")
        uri, env = libpq(db.url)
        _run([_tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={uri}",
              str(dump_file)], env, f"pg_restore of the {db.name} database")
    else:
        raise DumpError(f"{db.name}: {db.engine} databases cannot be restored")
