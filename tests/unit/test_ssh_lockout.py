"""SSH passwords and the per-account lockout, on a real (SQLite file) database."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

import asyncssh
import pytest

from gemhub.services.common.db import make_engine, make_sessionmaker, run_migrations
from gemhub.services.common.errors import BadRequest, Conflict, NotFound
from gemhub.services.ssh import credentials as cr
from gemhub.services.ssh.models import Account, AuditEvent

MIGRATIONS = Path(cr.__file__).resolve().parent / "migrations"
T0 = datetime.datetime(2026, 11, 25, 8, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def creds(tmp_path, monkeypatch):
    # cost 4 keeps the tests fast; the service uses bcrypt's default 12
    monkeypatch.setattr(cr, "hash_password", lambda p, rounds=4: cr.bcrypt.hashpw(
        p.encode(), cr.bcrypt.gensalt(rounds)).decode())
    engine = make_engine(f"sqlite:///{tmp_path}/ssh.sqlite")
    run_migrations(engine, MIGRATIONS)
    return cr.Credentials(make_sessionmaker(engine, AuditEvent), max_failures=5,
                          lockout=datetime.timedelta(minutes=30))


def check(creds, user, password, now=T0, source="10.0.0.1"):
    """What the gateway does for one password attempt; True when it logs in."""
    claim = creds.claim_password_check(user, now)
    if claim.hashed is None:
        return claim.refusal
    ok = cr.password_matches(password, claim.hashed)
    creds.password_checked(user, ok, source, now)
    return ok


def test_password_rules():
    for bad, needle in [("short", "at least 8"), ("x" * 73, "72 bytes"), (" padded-pass ", "spaces"),
                        (12345678, "string")]:
        with pytest.raises(BadRequest, match=needle):
            cr.validate_password(bad)
    hashed = cr.hash_password("Correct-Horse-1", rounds=4)
    assert hashed.startswith("$2") and "Correct" not in hashed
    assert cr.password_matches("Correct-Horse-1", hashed)
    assert not cr.password_matches("correct-horse-1", hashed)


def test_no_password_means_no_password_login(creds):
    assert check(creds, "alice", "anything-at-all") == "no-password"
    assert creds.status("alice", T0)["failures"] == 0
    with creds.sessions() as s:  # a guessed user name leaves no row behind
        assert s.query(Account).count() == 0


def test_five_failures_lock_for_thirty_minutes_whatever_the_source(creds):
    creds.set_password("alice", "Correct-Horse-1")
    for i in range(4):
        assert check(creds, "alice", f"wrong-{i}", source=f"10.0.0.{i}") is False
    assert creds.status("alice", T0)["attempts_left"] == 1
    assert check(creds, "alice", "wrong-5", source="192.168.1.1") is False
    status = creds.status("alice", T0)
    assert status["locked"] and status["locked_until"] == T0 + datetime.timedelta(minutes=30)
    assert status["last_failure_from"] == "192.168.1.1"
    # the right password is not even compared while locked
    assert check(creds, "alice", "Correct-Horse-1", T0 + datetime.timedelta(minutes=29)) == "locked"
    assert creds.locked_until("alice", T0 + datetime.timedelta(minutes=29)) is not None
    # ... and works once the lock has passed, with a fresh count
    later = T0 + datetime.timedelta(minutes=30, seconds=1)
    assert check(creds, "alice", "Correct-Horse-1", later) is True
    status = creds.status("alice", later)
    assert (status["locked"], status["failures"], status["attempts_left"]) == (False, 0, 5)


def test_success_resets_the_count_and_accounts_are_separate(creds):
    creds.set_password("alice", "Correct-Horse-1")
    creds.set_password("bob", "Correct-Horse-2")
    for i in range(4):
        check(creds, "alice", f"wrong-{i}")
    assert check(creds, "alice", "Correct-Horse-1") is True
    assert creds.status("alice", T0)["failures"] == 0
    for i in range(5):
        check(creds, "bob", f"wrong-{i}")
    assert creds.status("bob", T0)["locked"] and not creds.status("alice", T0)["locked"]


def test_concurrent_guesses_compare_at_most_five(creds):
    """20 threads (own DB connections) guess at once: exactly five comparisons ever run."""
    creds.set_password("alice", "Correct-Horse-1")
    compared, lock = [], threading.Lock()
    real = cr.password_matches

    def counting(password, hashed):
        with lock:
            compared.append(password)
        return real(password, hashed)

    barrier = threading.Barrier(20)

    def attempt(i):
        barrier.wait()
        claim = creds.claim_password_check("alice", T0)
        if claim.hashed is not None:
            creds.password_checked("alice", counting(f"guess-{i}", claim.hashed), "10.1.1.1", T0)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(compared) == 5
    status = creds.status("alice", T0)
    assert status["locked"] and status["failures"] == 5
    assert check(creds, "alice", "Correct-Horse-1") == "locked"


def test_keys_registry(creds):
    text = asyncssh.generate_private_key("ssh-ed25519", comment="laptop").export_public_key().decode()
    key = creds.add_key("alice", text)
    assert key.name == "laptop" and creds.key_owner_matches("alice", key.fingerprint)
    assert not creds.key_owner_matches("bob", key.fingerprint)
    with pytest.raises(Conflict, match="already registered"):
        creds.add_key("bob", text)  # a key identifies one person
    with pytest.raises(BadRequest, match="not an OpenSSH public key"):
        creds.add_key("alice", "garbage")
    with pytest.raises(NotFound):
        creds.delete_key("bob", key.id)  # not bob's
    assert [k.id for k in creds.keys("alice")] == [key.id]
    creds.delete_key("alice", key.id)
    assert creds.keys("alice") == [] and not creds.key_owner_matches("alice", key.fingerprint)
