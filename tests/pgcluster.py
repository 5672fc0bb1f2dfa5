"""A PostgreSQL server of the tests' own: Debian's PostgreSQL (tests/install-system-deps.sh)
started on loopback in a temporary folder, password logins over TCP, stopped afterwards."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from hubproc import free_port


def server_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    """Why no test server can run here, or None."""
    if os.geteuid() != 0:
        return "needs root (to run PostgreSQL as its postgres account)"
    if server_bin() is None or shutil.which("pg_dump") is None:
        return "PostgreSQL is not installed (tests/install-system-deps.sh installs it)"
    return None


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gemhub-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.bin = server_bin()
        self.user = "gemhub"
        self.password = "pw-" + secrets.token_hex(12)

    def _as_postgres(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                              capture_output=True, text=True, **kw)

    def start(self) -> "Postgres":
        shutil.chown(self.dir, "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth-local=trust", "--auth-host=scram-sha-256")
        self._ctl("start")
        self.sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        return self

    def _ctl(self, action: str, *extra: str) -> None:
        # -l: the server's output goes to a file (a pipe kept open would hang the caller)
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *extra,
                          "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                                f"-c unix_socket_directories={self.dir}", action)

    def sql(self, statement: str, db: str = "postgres") -> str:
        return self._as_postgres("psql", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "-d", db,
                                 "-v", "ON_ERROR_STOP=1", "-qAtc", statement).stdout

    def create_database(self, name: str) -> str:
        """A new database owned by the tests' role; returns its URL (password included)."""
        self.sql(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, db: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    def restart(self) -> None:
        """What an administrator does: ``pg_ctl restart`` (fast mode: sessions are ended)."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
