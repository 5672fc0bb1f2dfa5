"""Who may run now, who borrows from whom, and whom to preempt (pure: no database).

Quota decisions work on :class:`Book`, a workspace's limits and what its admitted entries
use. Borrowing follows seed 003 and Kueue's cohorts: a workspace in a cohort may go over
its nominal quota with capacity another member leaves idle, when its utilisation exceeds
that member's by more than a threshold (20 % by default), within its borrowing limit, for
preemptible work only (what is lent must be reclaimable). A lender that needs its quota
back reclaims it by preempting what was borrowed from it. Counters (environments, jobs,
inference replicas) are never borrowed.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterable, Mapping, Sequence

from .quotas import ACCEL, COUNTERS, Amounts, Excess, add, over

ZERO = Decimal(0)
_COUNTER_KEYS = frozenset(COUNTERS.values())


@dataclass
class Book:
    """One workspace's quota position."""

    nominal: Amounts = field(default_factory=dict)
    borrowing: Amounts = field(default_factory=dict)  # most it may borrow, per key (absent: no bound)
    used: Amounts = field(default_factory=dict)        # every admitted entry's demand
    borrowed: Amounts = field(default_factory=dict)    # the part of ``used`` borrowed from others
    lent: Amounts = field(default_factory=dict)        # what others borrow from this workspace

    def self_used(self) -> Amounts:
        return add(self.used, self.borrowed, -1)

    def utilisation(self, key: str, with_lent: bool) -> Decimal | None:
        nominal = self.nominal.get(key)
        if nominal is None:
            return None
        use = self.used.get(key, ZERO) if not with_lent else \
            self.used.get(key, ZERO) - self.borrowed.get(key, ZERO) + self.lent.get(key, ZERO)
        if nominal == 0:
            return Decimal("Infinity") if use > 0 else ZERO
        return use / nominal


@dataclass(frozen=True)
class Borrow:
    lender: int
    amounts: Amounts


@dataclass(frozen=True)
class Verdict:
    """``ok`` (with an optional ``borrow``), or blocked by ``excess`` (the quota queue), with
    ``reclaim`` set when lent quota must come back first."""

    ok: bool
    excess: tuple[Excess, ...] = ()
    borrow: Borrow | None = None
    reclaim: Amounts | None = None
    personal: bool = False


def decide(ws_id: int, books: Mapping[int, Book], cohort: Sequence[int], need: Amounts,
           personal_limits: Amounts, personal_used: Amounts, can_borrow: bool,
           threshold: Decimal) -> Verdict:
    """May ``need`` run in workspace ``ws_id`` now, and on what terms?"""
    excess = over(personal_limits, personal_used, need)
    if excess:
        return Verdict(False, tuple(excess), personal=True)
    book = books[ws_id]
    mine = book.self_used()
    reclaim: Amounts = {}
    borrow_need: Amounts = {}
    blocked: list[Excess] = []
    for key, nominal in book.nominal.items():
        n = need.get(key, ZERO)
        if not n:
            continue
        own = mine.get(key, ZERO)
        lent = book.lent.get(key, ZERO)
        if own + n <= nominal:
            if own + lent + n > nominal:
                reclaim[key] = own + lent + n - nominal
            continue
        if lent > 0:  # our own quota is lent out: take it back before borrowing
            reclaim[key] = min(lent, own + lent + n - nominal)
        if key in _COUNTER_KEYS:
            blocked.append(Excess(key, nominal, book.used.get(key, ZERO), n))
        else:
            borrow_need[key] = min(n, own + n - nominal)
    if blocked:
        return Verdict(False, tuple(blocked))
    if reclaim:
        return Verdict(False, tuple(Excess(k, book.nominal[k], book.used.get(k, ZERO), need[k]) for k in reclaim),
                       reclaim=reclaim)
    if not borrow_need:
        return Verdict(True)
    excess = tuple(Excess(k, book.nominal[k], book.used.get(k, ZERO), need[k]) for k in borrow_need)
    if not can_borrow:
        return Verdict(False, excess)
    lender = choose_lender(ws_id, books, cohort, borrow_need, threshold)
    if lender is None:
        return Verdict(False, excess)
    return Verdict(True, borrow=Borrow(lender, borrow_need))


def choose_lender(ws_id: int, books: Mapping[int, Book], cohort: Sequence[int], amounts: Amounts,
                  threshold: Decimal) -> int | None:
    """The cohort member to borrow ``amounts`` from (the least utilised that qualifies)."""
    book = books[ws_id]
    for key, amount in amounts.items():
        limit = book.borrowing.get(key)
        if limit is not None and book.borrowed.get(key, ZERO) + amount > limit:
            return None
    best: tuple[Decimal, int] | None = None
    for other in cohort:
        if other == ws_id or other not in books:
            continue
        lender = books[other]
        worst = ZERO
        fits = True
        for key, amount in amounts.items():
            nominal = lender.nominal.get(key)
            if nominal is None:
                fits = False
                break
            idle = nominal - lender.used.get(key, ZERO) + lender.borrowed.get(key, ZERO) - lender.lent.get(key, ZERO)
            mine = book.utilisation(key, with_lent=False)
            theirs = lender.utilisation(key, with_lent=True)
            if idle < amount or mine is None or theirs is None or mine - theirs <= threshold:
                fits = False
                break
            worst = max(worst, theirs)
        if fits and (best is None or (worst, other) < best):
            best = (worst, other)
    return best[1] if best else None


# -- preemption -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Running:
    """An admitted entry as preemption sees it."""

    id: int
    workspace_id: int
    username: str
    kind: str
    priority: int
    admitted_at: datetime.datetime
    demand: Amounts
    borrowed_from: int | None = None
    borrowed: Amounts = field(default_factory=dict)
    device_ids: tuple[str, ...] = ()


def victim_order(candidates: Iterable[Running]) -> list[Running]:
    """Lowest priority first; among equals the most recently admitted (least work lost)."""
    return sorted(candidates, key=lambda r: (r.priority, -r.admitted_at.timestamp(), -r.id))


def free_until(candidates: Sequence[Running], needed: Amounts,
               amount_of: Callable[[Running], Amounts] = lambda r: r.demand) -> list[Running] | None:
    """The shortest prefix of ``candidates`` whose amounts cover ``needed`` (None: never)."""
    freed: Amounts = {}
    chosen: list[Running] = []
    for r in candidates:
        if all(freed.get(k, ZERO) >= v for k, v in needed.items()):
            break
        useful = any(amount_of(r).get(k, ZERO) > 0 and freed.get(k, ZERO) < v for k, v in needed.items())
        if not useful:
            continue
        chosen.append(r)
        freed = add(freed, amount_of(r))
    if all(freed.get(k, ZERO) >= v for k, v in needed.items()):
        return chosen
    return None


def shortfall(excess: Iterable[Excess]) -> Amounts:
    """How much must be freed so that each exceeded limit holds again."""
    return {e.key: e.used + e.need - e.limit for e in excess}


def is_accelerator(key: str) -> bool:
    return key.startswith(ACCEL)
