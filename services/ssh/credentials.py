"""Who may log in over SSH: registered keys, SSH passwords and the per-account lockout.

Plain Python over the service's SQLAlchemy sessions (no tornado, no asyncssh server).

Lockout (per hub account, whatever the client's address): a password check is *claimed*
with one atomic ``UPDATE ... SET failures = failures + 1 WHERE failures < max AND not
locked`` before the password is compared, so however many clients guess at once, at most
``max_failures`` guesses are ever compared; the failure that completes the count sets
``locked_until``. A success resets the count. While locked, every method (keys included) is
refused. Key offers that are not registered are not failures: an OpenSSH client tries every
key of its agent in turn, and that must not lock its owner out.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import bcrypt
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from gemhub.services.common.audit import audit_event, utcnow
from gemhub.services.common.errors import BadRequest, Conflict, NotFound

from .keys import KeyRejected, ParsedKey, key_name, parse_public_key
from .models import Account, PublicKey

MIN_PASSWORD = 8
# bcrypt compares at most 72 bytes; longer passwords are refused instead of silently cut.
MAX_PASSWORD_BYTES = 72
MAX_KEYS = 50


def as_utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=datetime.timezone.utc)


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def password_matches(password: str, hashed: str) -> bool:
    """Constant-time bcrypt comparison (slow on purpose: run it off the event loop)."""
    data = password.encode()
    if len(data) > MAX_PASSWORD_BYTES:
        return False
    return bcrypt.checkpw(data, hashed.encode())


def validate_password(password: object) -> str:
    if not isinstance(password, str):
        raise BadRequest("password must be a string")
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"the SSH password must have at least {MIN_PASSWORD} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise BadRequest(f"the SSH password must be at most {MAX_PASSWORD_BYTES} bytes long")
    if password != password.strip():
        raise BadRequest("the SSH password must not start or end with spaces")
    return password


@dataclass(frozen=True)
class Claim:
    """Outcome of asking to compare a password: ``hashed`` is set when the check may run."""

    hashed: str | None
    refusal: str | None  # "locked" | "no-password" | "busy"
    locked_until: datetime.datetime | None = None


class Credentials:
    def __init__(self, sessions: sessionmaker, max_failures: int = 5,
                 lockout: datetime.timedelta = datetime.timedelta(minutes=30)):
        self.sessions = sessions
        self.max_failures = max_failures
        self.lockout = lockout

    # -- keys ----------------------------------------------------------------------------
    def keys(self, username: str) -> list[PublicKey]:
        with self.sessions() as s:
            return list(s.scalars(select(PublicKey).filter_by(username=username).order_by(PublicKey.id)))

    def add_key(self, username: str, text: object, name: object = None) -> PublicKey:
        try:
            parsed: ParsedKey = parse_public_key(text)
            label = key_name(name, parsed)
        except KeyRejected as e:
            raise BadRequest(str(e)) from None
        with self.sessions() as s:
            count = len(s.scalars(select(PublicKey.id).filter_by(username=username)).all())
            if count >= MAX_KEYS:
                raise Conflict(f"you already have {MAX_KEYS} keys; delete one first")
            key = PublicKey(username=username, name=label, algorithm=parsed.algorithm,
                            fingerprint=parsed.fingerprint, public_key=parsed.openssh, created=utcnow())
            s.add(key)
            audit_event(s, username, "key.add", username, fingerprint=parsed.fingerprint, name=label)
            try:
                s.commit()
            except IntegrityError:
                # Whoever owns it: the message does not say, so it reveals nothing.
                raise Conflict(f"the key {parsed.fingerprint} is already registered") from None
            return key

    def delete_key(self, username: str, key_id: int) -> None:
        with self.sessions() as s:
            key = s.get(PublicKey, key_id)
            if key is None or key.username != username:
                raise NotFound(f"you have no key with id {key_id}")
            s.delete(key)
            audit_event(s, username, "key.delete", username, fingerprint=key.fingerprint)
            s.commit()

    def key_owner_matches(self, username: str, fingerprint: str) -> bool:
        with self.sessions() as s:
            key = s.scalars(select(PublicKey).filter_by(fingerprint=fingerprint)).first()
            return key is not None and key.username == username

    def key_used(self, username: str, fingerprint: str, source: str) -> None:
        with self.sessions() as s:
            s.execute(update(PublicKey).filter_by(username=username, fingerprint=fingerprint)
                      .values(last_used=utcnow()))
            audit_event(s, username, "login.key", username, fingerprint=fingerprint, source=source)
            s.commit()

    def record_event(self, username: str, action: str, **detail) -> None:
        with self.sessions() as s:
            audit_event(s, username, action, username, **detail)
            s.commit()

    # -- password ------------------------------------------------------------------------
    def set_password(self, username: str, password: object) -> None:
        hashed = hash_password(validate_password(password))
        self._ensure_account(username)
        with self.sessions() as s:
            s.execute(update(Account).filter_by(username=username)
                      .values(password_hash=hashed, password_set=utcnow()))
            audit_event(s, username, "password.set", username)
            s.commit()

    def clear_password(self, username: str) -> None:
        with self.sessions() as s:
            s.execute(update(Account).filter_by(username=username).values(password_hash=None, password_set=None))
            audit_event(s, username, "password.clear", username)
            s.commit()

    # -- lockout -------------------------------------------------------------------------
    def _ensure_account(self, username: str) -> None:
        with self.sessions() as s:
            if s.get(Account, username) is not None:
                return
            s.add(Account(username=username, failures=0))
            try:
                s.commit()
            except IntegrityError:  # created concurrently: fine
                s.rollback()

    def _expire(self, username: str, now: datetime.datetime) -> None:
        """An elapsed lock ends, and with it the count of failures that caused it."""
        with self.sessions() as s:
            s.execute(update(Account)
                      .where(Account.username == username, Account.locked_until.is_not(None),
                             Account.locked_until <= now)
                      .values(failures=0, locked_until=None))
            s.commit()

    def locked_until(self, username: str, now: datetime.datetime | None = None) -> datetime.datetime | None:
        now = now or utcnow()
        self._expire(username, now)
        with self.sessions() as s:
            account = s.get(Account, username)
            return as_utc(account.locked_until) if account is not None else None

    def claim_password_check(self, username: str, now: datetime.datetime | None = None) -> Claim:
        now = now or utcnow()
        # No row is made here: only setting a password creates one, so guessed user names
        # leave nothing behind.
        self._expire(username, now)
        with self.sessions() as s:
            claimed = s.execute(
                update(Account)
                .where(Account.username == username, Account.locked_until.is_(None),
                       Account.password_hash.is_not(None), Account.failures < self.max_failures)
                .values(failures=Account.failures + 1)
            ).rowcount
            s.commit()
            account = s.get(Account, username)
            if account is None:
                return Claim(None, "no-password")
            s.refresh(account)
            if claimed:
                return Claim(hashed=account.password_hash, refusal=None)
            if account.locked_until is not None:
                return Claim(None, "locked", as_utc(account.locked_until))
            if account.password_hash is None:
                return Claim(None, "no-password")
            return Claim(None, "busy")  # max_failures checks are in flight right now

    def password_checked(self, username: str, ok: bool, source: str,
                         now: datetime.datetime | None = None) -> datetime.datetime | None:
        """Record a claimed check's result; returns the lock's end if this failure locked."""
        now = now or utcnow()
        with self.sessions() as s:
            if ok:
                s.execute(update(Account).filter_by(username=username).values(failures=0))
                audit_event(s, username, "login.password", username, source=source)
                s.commit()
                return None
            until = now + self.lockout
            s.execute(update(Account).filter_by(username=username)
                      .values(last_failure=now, last_failure_from=source[:64]))
            locked = s.execute(
                update(Account)
                .where(Account.username == username, Account.locked_until.is_(None),
                       Account.failures >= self.max_failures)
                .values(locked_until=until)
            ).rowcount
            audit_event(s, username, "login.failed", username, source=source, locked=bool(locked))
            s.commit()
            return until if locked else None

    def login_succeeded(self, username: str) -> None:
        """A key login also ends a run of password failures."""
        with self.sessions() as s:
            s.execute(update(Account).where(Account.username == username, Account.locked_until.is_(None))
                      .values(failures=0))
            s.commit()

    def status(self, username: str, now: datetime.datetime | None = None) -> dict:
        now = now or utcnow()
        until = self.locked_until(username, now)
        with self.sessions() as s:
            account = s.get(Account, username)
        failures = account.failures if account is not None else 0
        return {
            "has_password": bool(account and account.password_hash),
            "password_set": as_utc(account.password_set) if account else None,
            "locked": until is not None,
            "locked_until": until,
            "failures": failures,
            "attempts_left": 0 if until is not None else max(0, self.max_failures - failures),
            "last_failure": as_utc(account.last_failure) if account else None,
            "last_failure_from": account.last_failure_from if account else None,
        }
