"""The ledger's pure rules: quota bodies, admission bodies, demands in device units,
borrowing under the 20 % rule, reclaim, and the choice of whom to preempt."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemhub.services.common.errors import BadRequest
from gemhub.services.quota import asks, quotas, scheduling
from gemhub.services.quota.scheduling import Book, Running
from gemhub.spawner.accelerators import default_registry, parse
from gemhub.spawner.accelerators.allocator import allocate
from gemhub.spawner.accelerators.inventory import SimulatedInventory
from gemhub.spawner.presets import Catalog

REG = default_registry()
D = Decimal
LEVELS = {"low": 0, "normal": 100, "high": 200}
CATALOG = Catalog.from_config([{"name": "B1", "cpu": 1, "memory": "2G"},
                               {"name": "P1", "cpu": 2, "memory": "8G", "accelerator": "1(A100-80G)"}], "B1")


def test_quota_bodies_are_validated_and_round_trip():
    limits = quotas.parse_limits({"cpu": "8.5", "memory": "64G", "environments": 3, "jobs": 0,
                                  "accelerators": {"A100-80G": 2, "nvidia": "4.5", "a100": 1}}, REG)
    assert limits == {"cpu": D("8.5"), "memory_mib": D(65536), "environments": D(3), "jobs": D(0),
                      "accelerator:A100-80G": D(2), "accelerator:nvidia": D("4.5"), "accelerator:A100": D(1)}
    shown = quotas.limits_json(limits)
    assert shown["memory"] == "64G" and shown["accelerators"] == {"A100": "1", "A100-80G": "2", "nvidia": "4.5"}
    assert quotas.limits_from_json(shown) == limits
    # null removes one limit; the rest of the base stays
    assert quotas.parse_limits({"jobs": None, "accelerators": {"nvidia": None}}, REG, base=limits) == {
        k: v for k, v in limits.items() if k not in ("jobs", "accelerator:nvidia")}


@pytest.mark.parametrize("body, needle", [
    ({"cpu": -1}, "must not be negative"), ({"environments": 1.5}, "whole number"),
    ({"jobs": "2.5"}, "whole number"), ({"memory": "1.5K"}, "whole number of MiB"),
    ({"memory": "lots"}, "memory must be text like"), ({"memory": "1G", "memory_mib": 1024}, "not both"),
    ({"accelerators": {"MI210": "0.5"}}, "MI210 devices cannot be shared"),
    ({"accelerators": {"A100-80G": "0.12345"}}, "more than 4 decimal places"),
    ({"accelerators": {"Z9000": 1}}, "unknown accelerator model or vendor"),
    ({"accelerators": [1]}, "object of model or vendor"), ({"cpu": True}, "must be a number"),
    ({"cpu": float("nan")}, "finite"), ({"cpu": 10**12}, "too large"), ({"gpu": 1}, "unknown quota key"),
    ([], "JSON object of limits"),
])
def test_bad_quota_bodies_say_why(body, needle):
    with pytest.raises(BadRequest, match=needle):
        quotas.parse_limits(body, REG)


def test_personal_limits_stay_within_the_workspace():
    quotas.check_personal({"cpu": D(2)}, {"cpu": D(4)})
    quotas.check_personal({"cpu": D(2)}, {})
    with pytest.raises(BadRequest, match="above the workspace's 4 cores"):
        quotas.check_personal({"cpu": D(5)}, {"cpu": D(4)})


def body(**kw):
    return {"workspace_id": 3, "project_id": 4, "idempotency_key": "k", "holder": "server:a/", **kw}


def test_an_ask_from_a_preset_or_a_spec():
    a = asks.parse_ask(body(preset="P1"), CATALOG, REG, LEVELS)
    assert (a.cpu, a.memory_mib, a.spec, a.kind, a.priority) == (D(2), 8192, "1(A100-80G)", "notebook", None)
    b = asks.parse_ask(body(spec="0.5(A100-80G)", cpu="1.5", memory="3G", kind="job", priority="high"),
                       CATALOG, REG, LEVELS)
    assert (b.cpu, b.memory_mib, b.spec, b.priority) == (D("1.5"), 3072, "0.5(A100-80G)", 200)
    assert a.fingerprint("u") != b.fingerprint("u") and a.fingerprint("u") == a.fingerprint("u")


@pytest.mark.parametrize("change, needle", [
    ({"workspace_id": "²"}, "whole number"), ({"workspace_id": 2**63}, "between"), ({"project_id": 0}, "between"),
    ({"kind": "vm"}, "kind must be one of"), ({"preset": "Z"}, "unknown preset"), ({"spec": "2(V100"}, "column"),
    ({"spec": "0.5(MI210)"}, "cannot be shared"), ({"priority": "urgent"}, "level name"),
    ({"priority": 10**7}, "level name"), ({"holder": "x" * 600}, "at most 512"), ({"holder": "a\nb"}, "control"),
    ({"replace": "yes"}, "true or false"), ({"cpu": 0, "preset": "B1"}, "more than 0"),
    ({"memory": "-1G", "preset": "B1"}, "memory must be"), ({"extra": 1}, "unknown field"),
])
def test_bad_asks_say_why(change, needle):
    with pytest.raises(BadRequest, match=needle):
        asks.parse_ask({**body(preset="B1"), **change} if "preset" not in change or change.get("preset")
                       else body(**change), CATALOG, REG, LEVELS)


def test_without_a_preset_cpu_memory_and_spec_are_needed():
    with pytest.raises(BadRequest, match="send a preset"):
        asks.parse_ask(body(), CATALOG, REG, LEVELS)
    with pytest.raises(BadRequest, match="cpu is required"):
        asks.parse_ask(body(spec="1"), CATALOG, REG, LEVELS)


def devices():
    return {d.id: d for d in SimulatedInventory.from_config(
        [{"node": "n", "model": "A100-80G", "count": 2}, {"node": "n", "model": "910B", "count": 1}]).devices()}


@pytest.mark.parametrize("spec, units, keys", [
    ("2(A100-80G)", "2", ["A100-80G", "A100", "nvidia"]),
    ("0.5(A100-80G)", "0.5", ["A100-80G", "A100", "nvidia"]),
    ("1(mig-1g.10gb)", "0.1429", ["A100-80G", "A100", "nvidia"]),   # 1 of the card's 7 slices
    ("16G,0.25", "0.25", ["A100-80G", "A100", "nvidia"]),
    ("1(910B)", "1", ["910B", "ascend"]),
])
def test_demand_counts_device_units_against_model_family_and_vendor(spec, units, keys):
    devs = devices()
    request = parse(spec, REG)
    placement = allocate(list(devs.values()), [], request, "h", "binpack", REG)
    ask = asks.Ask(1, 1, "job", None, request, D(1), 1024, None, "k", "h", False)
    need = asks.demand(ask, REG, placement, devs)
    assert need["cpu"] == 1 and need["memory_mib"] == 1024 and need["jobs"] == 1
    assert {k[len("accelerator:"):]: v for k, v in need.items() if k.startswith("accelerator:")} == \
        {k: D(units) for k in keys}


def test_a_request_for_any_device_is_counted_on_the_model_it_lands_on():
    devs = devices()
    request = parse("1", REG)
    placement = allocate([devs["n/2"]], [], request, "h", "binpack", REG)
    need = asks.demand(asks.Ask(1, 1, "notebook", None, request, D(1), 1, None, "k", "h", False), REG, placement, devs)
    assert "accelerator:910B" in need and "accelerator:nvidia" not in need and need["environments"] == 1


# -- borrowing -----------------------------------------------------------------------------------
def book(nominal=None, used=None, borrowed=None, lent=None, borrowing=None) -> Book:
    k = "accelerator:A100-80G"
    return Book(nominal={k: D(nominal)} if nominal is not None else {},
                borrowing={k: D(borrowing)} if borrowing is not None else {},
                used={k: D(used or 0)}, borrowed={k: D(borrowed or 0)}, lent={k: D(lent or 0)})


NEED = {"accelerator:A100-80G": D(1), "jobs": D(1)}


def decide(books, ws=1, can_borrow=True, threshold="0.2", need=NEED):
    return scheduling.decide(ws, books, sorted(books), need, {}, {}, can_borrow, D(threshold))


def test_within_nominal_no_borrowing():
    v = decide({1: book(2, 1), 2: book(2, 0)})
    assert v.ok and v.borrow is None


def test_borrowing_follows_the_20_percent_rule():
    # A is full (100 %), B idle (0 %): a gap of 100 % > 20 %: borrow from B
    v = decide({1: book(1, 1), 2: book(2, 0)})
    assert v.ok and v.borrow.lender == 2 and v.borrow.amounts == {"accelerator:A100-80G": D(1)}
    # B at 90 % (lent 0, used 9 of 10) and A at 100 %: only 10 % apart: no borrowing
    v = decide({1: book(1, 1), 2: book(10, 9)})
    assert not v.ok and v.excess[0].key == "accelerator:A100-80G"
    # the threshold is configurable: 5 % lets it borrow
    assert decide({1: book(1, 1), 2: book(10, 9)}, threshold="0.05").ok
    # never beyond the borrowing limit, never for what may not be preempted
    assert not decide({1: book(1, 1, borrowing=0), 2: book(2, 0)}).ok
    assert not decide({1: book(1, 1), 2: book(2, 0)}, can_borrow=False).ok
    # the least utilised lender is chosen
    v = decide({1: book(1, 1), 2: book(4, 2), 3: book(4, 0)})
    assert v.borrow.lender == 3


def test_counters_are_never_borrowed():
    books = {1: Book(nominal={"jobs": D(1)}, used={"jobs": D(1)}), 2: Book(nominal={"jobs": D(5)})}
    v = scheduling.decide(1, books, [1, 2], {"jobs": D(1)}, {}, {}, True, D("0.2"))
    assert not v.ok and v.excess[0].key == "jobs"


def test_a_lender_reclaims_what_it_lent_before_anything_else():
    # B (nominal 2) uses 1 and lent 1: one more of its own needs the loan back
    v = decide({1: book(1, 2, borrowed=1), 2: book(2, 1, lent=1)}, ws=2)
    assert not v.ok and v.reclaim == {"accelerator:A100-80G": D(1)}
    assert decide({1: book(1, 1), 2: book(2, 1)}, ws=2).ok


def test_personal_limits_bind_first():
    v = scheduling.decide(1, {1: book(4, 0)}, [1], NEED, {"jobs": D(1)}, {"jobs": D(1)}, True, D("0.2"))
    assert not v.ok and v.personal


def run(ident, priority, minutes_ago, demand=None, borrowed=None):
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
    return Running(ident, 1, "u", "job", priority, at, demand or {"accelerator:X": D(1)},
                   borrowed_from=2 if borrowed else None, borrowed=borrowed or {})


def test_victims_lowest_priority_then_newest_and_only_as_many_as_needed():
    rs = [run(1, 0, 30), run(2, 0, 5), run(3, 50, 1), run(4, 0, 10, demand={"cpu": D(4)})]
    order = scheduling.victim_order(rs)
    assert [r.id for r in order] == [2, 4, 1, 3]
    chosen = scheduling.free_until(order, {"accelerator:X": D(2)})
    assert [r.id for r in chosen] == [2, 1]  # 4 frees nothing useful
    assert scheduling.free_until(order, {"accelerator:X": D(9)}) is None


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=8), st.integers(1, 6))
def test_victims_free_enough_or_none(entries, needed):
    rs = [run(i, p, m) for i, (p, m) in enumerate(entries)]
    chosen = scheduling.free_until(scheduling.victim_order(rs), {"accelerator:X": D(needed)})
    if needed > len(rs):
        assert chosen is None
    else:
        assert len(chosen) == needed
        assert max(r.priority for r in chosen) <= sorted(r.priority for r in rs)[needed - 1]
