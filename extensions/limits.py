"""Run-time limits of an environment (seed 001, 资源时效): when it must stop (pure).

A workspace may carry ``max_runtime_minutes`` (quota service). The spawner turns it into a
deadline when the server starts; the deadline goes into the spawner's state (the idle
culler stops the server once it has passed) and into ``GEMHUB_STOP_AT`` (the lab panel
counts down to it). The limit in force at start applies for the whole run: changing a
workspace's limit affects the next start, so nobody's running work is cut short without
the notice the countdown gave.
"""

from __future__ import annotations

import datetime as dt

ENV_VAR = "GEMHUB_STOP_AT"
STATE_KEY = "stop_at"
UTC = dt.timezone.utc


class LimitError(ValueError):
    """A limit or deadline is malformed; the message says what was expected."""


def check_minutes(value: object) -> int | None:
    """A workspace limit from an API body: null (no limit) or a whole number of minutes
    between 1 and 1 year."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise LimitError("the run-time limit (max_runtime_minutes) must be a whole number of minutes,"
                         f" or null for none, not {value!r}")
    if not 1 <= value <= 525_600:
        raise LimitError("the run-time limit (max_runtime_minutes) must be between 1 and 525600 minutes"
                         f" (one year), not {value}")
    return value


def deadline(started: dt.datetime, max_runtime_minutes: int | None) -> dt.datetime | None:
    if max_runtime_minutes is None:
        return None
    if started.tzinfo is None:
        raise LimitError("start time must be timezone-aware")
    return started.astimezone(UTC) + dt.timedelta(minutes=max_runtime_minutes)


def format_deadline(when: dt.datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_deadline(text: str | None) -> dt.datetime | None:
    if text is None or not str(text).strip():
        return None
    try:
        when = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise LimitError(f"a deadline must be an ISO 8601 time, not {text!r}") from None
    if when.tzinfo is None:
        raise LimitError(f"a deadline must carry its time zone, not {text!r}")
    return when.astimezone(UTC)


def remaining_seconds(when: dt.datetime | None, now: dt.datetime) -> int | None:
    if when is None:
        return None
    return max(0, int((when - now).total_seconds()))


def expired(when: dt.datetime | None, now: dt.datetime) -> bool:
    return when is not None and now >= when


def describe(seconds: int | None) -> str:
    """"stops in 1 h 20 min" (what the panel and the hub page say), or "" without a limit."""
    if seconds is None:
        return ""
    if seconds <= 0:
        return "stopping now (run-time limit reached)"
    minutes = -(-seconds // 60)
    h, m = divmod(minutes, 60)
    if h == 0:
        return f"stops in {m} min"
    return f"stops in {h} h" if m == 0 else f"stops in {h} h {m} min"
