"""The funnel over time: the fold of a matter's decisions and events (pure), and the event store on
its three backends (memory, SQLite, a real PostgreSQL)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fenliu.matter import MatterStore, open_store
from fenliu.matter.events import (
    DAY,
    DecisionFacts,
    Event,
    EventRejected,
    MatterState,
    RecordedEvent,
    UnknownMatter,
    check,
    fold,
)
from matter_helpers import GRASS, GRASS_AGAIN, TWP, WAGE, sighting
from pg import PgServer

T0 = 1_772_326_800  # 2026-03-01T01:00:00Z
H = 3600
PHONE = "13800000000"


def deadlines(at: int) -> dict[str, int]:
    return {
        "first_contact_by": at + 24 * H,
        "plan_by": at + 3 * DAY,
        "accept_by": at + 5 * DAY,
        "resolve_by": at + 30 * DAY,
    }


def decision(
    did: str, at: int, *, cid: str = "", stage: str = "MEDIATION", township: str = TWP, **kw: Any
) -> DecisionFacts:
    base: dict[str, Any] = {
        "complaint_id": cid or f"c-{did}",
        "decision_id": did,
        "received_at": at,
        "category": "grassland_dispute",
        "colour": "YELLOW",
        "tier": "TOWNSHIP",
        "stage": stage,
        "owner_department": "township_government",
        "township": township,
        "point": "P-village",
        "level": "VILLAGE",
        "deadlines": deadlines(at),
    }
    base.update(kw)
    return DecisionFacts(**base)


def event(key: str, kind: str, at: int, **kw: Any) -> Event:
    base: dict[str, Any] = {
        "idempotency_key": key,
        "kind": kind,
        "stage": "MEDIATION",
        "occurred_at": at,
        "actor_point": "P-village",
        "actor_level": "VILLAGE",
        "matter_id": "m-1",
    }
    if kind == "EXTENDED":
        base.update(extension_days=10, reason="the expert's report is awaited")
    if kind == "EVALUATED":
        base.update(satisfaction="SATISFIED")
    if kind == "HANDED_ON":
        base.update(handed_to_department="natural_resources", handed_to_point="P-bureau")
    base.update(kw)
    return Event(**base)


def rec(key: str, kind: str, at: int, **kw: Any) -> RecordedEvent:
    return RecordedEvent(f"e-{key}", event(key, kind, at, **kw), at)


# -- the fold


def test_a_later_event_meets_the_earlier_deadlines_it_implies() -> None:
    d = decision("d1", T0)
    st0 = fold("m-1", [d], [])
    assert st0.status == "OPEN" and st0.next_due == T0 + 24 * H and st0.rounds == 1
    late = T0 + 4 * DAY
    assert [n for n, _, _ in st0.overdue(late)] == ["first_contact_by", "plan_by"]
    st1 = fold("m-1", [d], [rec("k1", "PLAN_MADE", T0 + 2 * DAY)])
    assert st1.met == {"first_contact_by": T0 + 2 * DAY, "plan_by": T0 + 2 * DAY}
    assert st1.overdue(late) == () and st1.next_due == T0 + 5 * DAY
    assert st1.overdue(T0 + 6 * DAY) == (("accept_by", T0 + 5 * DAY, DAY),)
    st2 = fold("m-1", [d], [rec("k2", "FAILED", T0 + 40 * DAY)])
    assert set(st2.met) == set(deadlines(T0)) and st2.next_due is None
    assert st2.last_outcome == "FAILED" and st2.last_outcome_event == "e-k2" and st2.status == "OPEN"


def test_an_extension_moves_resolve_by_once() -> None:
    d = decision("d1", T0)
    st1 = fold("m-1", [d], [rec("x", "EXTENDED", T0 + DAY, extension_days=30)])
    assert st1.deadlines["resolve_by"] == T0 + 60 * DAY and st1.extension_days == 30
    assert st1.overdue(T0 + 45 * DAY) == (
        ("first_contact_by", T0 + 24 * H, 45 * DAY - 24 * H),
        ("plan_by", T0 + 3 * DAY, 42 * DAY),
        ("accept_by", T0 + 5 * DAY, 40 * DAY),
    )


@pytest.mark.parametrize(
    ("history", "new", "code"),
    [
        ([rec("x", "EXTENDED", T0 + DAY)], rec("y", "EXTENDED", T0 + 2 * DAY), "second-extension"),
        ([], rec("y", "EXTENDED", T0 + DAY, extension_days=31), "extension-range"),
        ([], rec("y", "EXTENDED", T0 + DAY, extension_days=0), "extension-range"),
        ([], rec("y", "EXTENDED", T0 + DAY, reason=" "), "extension-reason"),
        ([rec("w", "WITHDRAWN", T0 + DAY)], rec("y", "RESOLVED", T0 + 2 * DAY), "matter-closed"),
        ([rec("r", "RESOLVED", T0 + DAY)], rec("y", "FIRST_CONTACT", T0 + 2 * DAY), "matter-closed"),
        ([rec("f", "FAILED", T0 + DAY)], rec("y", "EXTENDED", T0 + 2 * DAY), "round-ended"),
        ([rec("f", "REFUSED", T0 + DAY)], rec("y", "RESOLVED", T0 + 2 * DAY), "round-ended"),
        ([], rec("y", "EVALUATED", T0 + DAY, satisfaction=""), "satisfaction-missing"),
        ([], rec("y", "HANDED_ON", T0 + DAY, handed_to_department=""), "handed-to-missing"),
        ([], rec("y", "FIRST_CONTACT", T0 - DAY), "before-decision"),
        ([], rec("y", "CELEBRATED", T0 + DAY), "unknown-kind"),
        # out of order: a resolution placed before an event already stored that it would forbid
        ([rec("c", "PLAN_MADE", T0 + 2 * DAY)], rec("y", "RESOLVED", T0 + DAY), "matter-closed"),
    ],
)
def test_an_impossible_event_is_rejected_with_its_code(
    history: list[RecordedEvent], new: RecordedEvent, code: str
) -> None:
    d = decision("d1", T0)
    before = fold("m-1", [d], history)
    with pytest.raises(EventRejected) as e:
        check("m-1", [d], history, new)
    assert e.value.code == code and "\n" not in str(e.value) and str(e.value)
    assert fold("m-1", [d], history) == before


def test_what_may_follow_an_ending_is_allowed() -> None:
    d = decision("d1", T0)
    after_failed = [rec("f", "FAILED", T0 + DAY), rec("h", "HANDED_ON", T0 + 2 * DAY)]
    st1 = check("m-1", [d], after_failed, rec("w", "WITHDRAWN", T0 + 3 * DAY))
    assert st1.status == "WITHDRAWN" and st1.owner_department == "natural_resources"
    closed = [rec("r", "RESOLVED", T0 + DAY, actor_level="TOWNSHIP")]
    st2 = check("m-1", [d], closed, rec("v", "EVALUATED", T0 + 2 * DAY, satisfaction="BASICALLY"))
    assert st2.status == "RESOLVED" and st2.resolved_level == "TOWNSHIP" and st2.satisfaction == "BASICALLY"
    assert st2.resolved_at == T0 + DAY and st2.overdue(T0 + 99 * DAY) == ()


def test_rounds_start_after_a_failure_and_after_a_closing_not_on_a_repeat() -> None:
    d1 = decision("d1", T0)
    repeat = decision("d2", T0 + 2 * DAY, stage="MEDIATION")
    st1 = fold("m-1", [d1, repeat], [])
    assert st1.rounds == 1 and st1.deadlines == deadlines(T0) and st1.round_started_at == T0
    failed = rec("f", "FAILED", T0 + 10 * DAY)
    moved = decision("d3", T0 + 12 * DAY, stage="ARBITRATION", owner_department="labour_arbitration")
    st2 = fold("m-1", [d1, repeat, moved], [failed])
    assert st2.rounds == 2 and st2.stage == "ARBITRATION" and st2.deadlines == deadlines(T0 + 12 * DAY)
    assert st2.met == {} and st2.last_outcome == "FAILED" and st2.last_outcome_stage == "MEDIATION"
    assert st2.owner_department == "labour_arbitration" and st2.first_point == "P-village"
    resolved = rec("r", "RESOLVED", T0 + 20 * DAY, stage="ARBITRATION", actor_level="BANNER")
    again = decision("d4", T0 + 40 * DAY)
    st3 = fold("m-1", [d1, repeat, moved, again], [failed, resolved])
    assert st3.status == "OPEN" and st3.rounds == 3 and st3.resolved_level == ""
    assert st3.last_outcome == "RESOLVED" and st3.deadlines == deadlines(T0 + 40 * DAY)


def test_handing_on_names_the_new_owner_and_keeps_the_first_receiver() -> None:
    st1 = fold("m-1", [decision("d1", T0)], [rec("h", "HANDED_ON", T0 + DAY)])
    assert (st1.owner_department, st1.point) == ("natural_resources", "P-bureau")
    assert (st1.first_point, st1.first_level) == ("P-village", "VILLAGE")


def test_the_state_round_trips_through_json() -> None:
    st1 = fold("m-1", [decision("d1", T0)], [rec("x", "EXTENDED", T0 + DAY), rec("a", "ACCEPTED", T0)])
    assert MatterState.from_json(st1.to_json()) == st1
    # every field, by name, and plain dicts a later change to the state cannot reach
    j = st1.to_json()
    assert j == dataclasses.asdict(st1) and json.loads(json.dumps(j)) == j
    assert j["deadlines"] is not st1.deadlines and j["met"] is not st1.met


# a valid history: each step is drawn so that the whole stays possible, times strictly increasing
KINDS_OPEN = ["FIRST_CONTACT", "PLAN_MADE", "ACCEPTED", "EXTENDED", "HANDED_ON", "EVALUATED", "REVISITED"]
ENDINGS = ["RESOLVED", "FAILED", "REFUSED", "WITHDRAWN"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[DecisionFacts], list[RecordedEvent]]:
    at = T0
    decisions = [decision("d0", at)]
    events: list[RecordedEvent] = []
    extended = ended = False
    for i in range(draw(st.integers(0, 12))):
        at += draw(st.integers(1, 5 * DAY))
        if ended and draw(st.booleans()):  # the next complaint: a new round
            stage = draw(st.sampled_from(["MEDIATION", "ARBITRATION", "LITIGATION"]))
            decisions.append(decision(f"d{i + 1}", at, stage=stage))
            ended = False
            continue
        if ended:
            kind = draw(st.sampled_from(["EVALUATED", "REVISITED"]))
        else:
            choices = [k for k in KINDS_OPEN if not (k == "EXTENDED" and extended)] + ENDINGS
            kind = draw(st.sampled_from(choices))
        extended = extended or kind == "EXTENDED"
        ended = ended or kind in ENDINGS
        level = draw(st.sampled_from(["VILLAGE", "TOWNSHIP", "BANNER"]))
        events.append(rec(f"k{i}", kind, at, actor_level=level))
    return decisions, events


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.data())
def test_any_arrival_order_and_any_repeat_give_the_same_state(
    h: tuple[list[DecisionFacts], list[RecordedEvent]], rnd: Any, data: st.DataObject
) -> None:
    decisions, events = h
    expected = fold("m-1", decisions, events)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    assert fold("m-1", list(reversed(decisions)), shuffled + repeats) == expected
    # recorded one by one in that order, every event is accepted and the end is the same
    placed: list[RecordedEvent] = []
    state = fold("m-1", decisions, [])
    for r in shuffled:
        state = check("m-1", decisions, placed, r)
        placed.append(r)
    assert state == expected


# -- the stores

BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MatterStore]:
    backend = request.param
    if backend == "memory":
        url = "memory:"
    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'matters.db'}"
    else:
        pg: PgServer = request.getfixturevalue("pg_server")
        url = pg.create_database()
    s = open_store(url)
    yield s
    s.close()


per_backend = pytest.mark.parametrize("store", BACKENDS, indirect=True)


def decided(store: MatterStore, cid: str, text: str, did: str, at: int, **kw: Any) -> str:
    """Record complaint ``cid`` and its decision ``did``; its matter id."""
    r = store.record(sighting(cid, text, complainant={"phone": kw.pop("phone", PHONE)}))
    assert store.set_decision(decision(did, at, cid=cid, **kw))
    return r.matter_id


@per_backend
def test_events_are_kept_and_fold_into_the_state(store: MatterStore) -> None:
    m = decided(store, "a", GRASS, "dec-a", T0)
    st0 = store.state(m)
    assert st0 is not None and st0.next_due == T0 + 24 * H and st0.township == TWP
    got, recorded, st1 = store.record_event(event("k1", "ACCEPTED", T0 + 2 * DAY, matter_id=m))
    assert recorded and got.event_id.startswith("e-") and len(got.event_id) == 34
    assert got.event.matter_id == m and st1.next_due == T0 + 30 * DAY
    assert store.state(m) == st1
    # by the decision id instead of the matter id
    _, _, st2 = store.record_event(event("k2", "FIRST_CONTACT", T0 + DAY, matter_id="", decision_id="dec-a"))
    assert st2.met["first_contact_by"] == T0 + DAY  # placed by its time, before the acceptance
    assert [r.event.idempotency_key for r in store.events(m)] == ["k2", "k1"]
    # a repeat answers as the first time, and changes nothing
    again, rec2, st3 = store.record_event(event("k1", "ACCEPTED", T0 + 2 * DAY, matter_id=m))
    assert (again, rec2, st3) == (got, False, st2) and len(store.events(m)) == 2


@per_backend
def test_unknown_ids_and_impossible_events_change_nothing(store: MatterStore) -> None:
    m = decided(store, "a", GRASS, "dec-a", T0)
    with pytest.raises(UnknownMatter):
        store.record_event(event("k", "ACCEPTED", T0 + DAY, matter_id="m-unknown"))
    with pytest.raises(UnknownMatter):
        store.record_event(event("k", "ACCEPTED", T0 + DAY, matter_id="", decision_id="dec-unknown"))
    store.record_event(event("w", "WITHDRAWN", T0 + DAY, matter_id=m))
    before = store.state(m)
    with pytest.raises(EventRejected) as e:
        store.record_event(event("r", "RESOLVED", T0 + 2 * DAY, matter_id=m))
    assert e.value.code == "matter-closed"
    assert store.state(m) == before and [r.event.kind for r in store.events(m)] == ["WITHDRAWN"]
    # the key of a rejected event is free: the corrected event may use it
    _, ok, st = store.record_event(event("r", "EVALUATED", T0 + 2 * DAY, matter_id=m))
    assert ok and st.satisfaction == "SATISFIED"


@per_backend
def test_a_recognized_complaint_carries_its_matters_state(store: MatterStore) -> None:
    m = decided(store, "a", GRASS, "dec-a", T0)
    store.record_event(event("f", "FAILED", T0 + DAY, matter_id=m))
    b = store.record(sighting("b", GRASS_AGAIN, complainant={"phone": PHONE}, channel="PHONE"))
    assert b.matter_id == m and b.facts.state is not None
    assert b.facts.state.last_outcome == "FAILED" and b.facts.state.last_outcome_stage == "MEDIATION"
    assert b.facts.state == store.state(m)
    assert store.set_decision(decision("dec-b", T0 + 2 * DAY, cid="b", stage="ARBITRATION"))
    st = store.state(m)
    assert st is not None and st.rounds == 2 and st.stage == "ARBITRATION"
    new = store.record(sighting("c", WAGE, complainant={"phone": "13900000000"}))
    assert new.new_matter and new.facts.state is None


@per_backend
def test_overdue_lists_by_due_time_and_filters(store: MatterStore) -> None:
    a = decided(store, "a", GRASS, "dec-a", T0, township="150626101", colour="RED")
    b = decided(store, "b", WAGE, "dec-b", T0 + DAY, township="150626102", phone="13900000000")
    c = decided(
        store, "c", "牧区饮水井坏了半年没人修，全村人畜饮水困难。", "dec-c", T0 + 2 * DAY, phone="13700000000"
    )
    store.record_event(event("ca", "ACCEPTED", T0 + 2 * DAY + H, matter_id=c))
    store.record_event(event("br", "RESOLVED", T0 + 3 * DAY, matter_id=b))
    as_of = T0 + 4 * DAY
    items = list(store.overdue(as_of))
    assert [i.state.matter_id for i in items] == [a]
    assert [n for n, _, _ in items[0].overdue] == ["first_contact_by", "plan_by"]
    assert items[0].overdue[0][2] == 3 * DAY  # how far past
    later = T0 + 40 * DAY
    assert [i.state.matter_id for i in store.overdue(later)] == [a, c]
    assert [i.state.matter_id for i in store.overdue(later, township="150626101")] == [a]
    assert [i.state.matter_id for i in store.overdue(later, colour="YELLOW")] == [c]
    assert [i.state.matter_id for i in store.overdue(later, owner_department="none")] == []
    assert [i.state.matter_id for i in store.overdue(later, limit=1)] == [a]


@per_backend
def test_a_later_decision_moves_its_matter_between_the_filtered_listings(store: MatterStore) -> None:
    m = decided(store, "a", GRASS, "dec-a", T0)
    later = T0 + 40 * DAY
    assert [i.state.matter_id for i in store.overdue(later, colour="YELLOW")] == [m]
    store.record_event(event("f", "FAILED", T0 + H, matter_id=m))  # the round ends; the next decides
    b = store.record(sighting("b", GRASS_AGAIN, complainant={"phone": PHONE}, channel="PHONE"))
    assert b.matter_id == m
    assert store.set_decision(decision("dec-b", T0 + DAY, cid="b", colour="RED", tier="BANNER"))
    st = store.state(m)
    assert st is not None and (st.colour, st.tier, st.rounds) == ("RED", "BANNER", 2)
    assert [i.state for i in store.overdue(later, colour="RED")] == [st]
    assert [i.state for i in store.overdue(later, tier="BANNER")] == [st]
    assert list(store.overdue(later, colour="YELLOW")) == list(store.overdue(later, tier="TOWNSHIP")) == []
    assert [(c.colour, c.tier, c.open) for c in store.open_counts(later)] == [("RED", "BANNER", 1)]


@per_backend
def test_concurrent_events_on_one_matter_serialize(store: MatterStore) -> None:
    m = decided(store, "a", GRASS, "dec-a", T0)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def extend(key: str) -> None:
        barrier.wait()
        try:
            store.record_event(event(key, "EXTENDED", T0 + DAY, matter_id=m))
            results.append("ok")
        except EventRejected as e:
            results.append(e.code)

    threads = [threading.Thread(target=extend, args=(k,)) for k in ("x1", "x2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "second-extension"]
    assert [r.event.kind for r in store.events(m)] == ["EXTENDED"]


@settings(max_examples=25, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_a_store_folds_any_arrival_order_alike(
    h: tuple[list[DecisionFacts], list[RecordedEvent]], rnd: Any
) -> None:
    decisions, events = h
    s = open_store("memory:")
    try:
        texts = [GRASS, GRASS_AGAIN]
        matter = ""
        for i, d in enumerate(decisions):
            r = s.record(sighting(d.complaint_id, texts[i % 2], complainant={"phone": PHONE}))
            matter = matter or r.matter_id
            s.set_decision(d)
        shuffled = list(events)
        rnd.shuffle(shuffled)
        for r in shuffled:
            s.record_event(dataclasses.replace(r.event, matter_id=matter))
        got = s.state(matter)
        assert got is not None
        want = fold(matter, decisions, [dataclasses.replace(x, event_id="") for x in events])
        assert dataclasses.replace(got, last_outcome_event="") == dataclasses.replace(
            want, last_outcome_event=""
        )
    finally:
        s.close()


_EXAMPLE = iter(range(1_000_000))


@per_backend
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories(), st.sampled_from(["as it happens", "decisions late", "events first"]))
def test_a_store_moves_its_state_on_by_each_new_decision_as_a_whole_fold_would(
    store: MatterStore, h: tuple[list[DecisionFacts], list[RecordedEvent]], order: str
) -> None:
    """Complaints and events written as they happen (each decision the latest thing on its matter: the
    store moves its state on without folding it again); every decision first and in reverse (each one
    late); or the first decision, then the events, then the other decisions (each earlier than events
    already stored; those that were impossible without it are refused): the state is the fold of all
    that was stored, after every step."""
    n = next(_EXAMPLE)
    decisions = [dataclasses.replace(x, decision_id=f"x{n}-{x.decision_id}", complaint_id="") for x in h[0]]
    decisions = [dataclasses.replace(x, complaint_id=f"c-{x.decision_id}") for x in decisions]
    events = [
        dataclasses.replace(
            r, event=dataclasses.replace(r.event, idempotency_key=f"x{n}-{r.event.idempotency_key}")
        )
        for r in h[1]
    ]
    phone = f"1370{n:07d}"
    region = {"township_code": f"15{n:07d}", "village_code": f"15{n:07d}001"}
    matter = ""

    def decide(i: int, x: DecisionFacts) -> None:
        nonlocal matter
        r = store.record(  # a township of its own: no earlier example's matter is near in words
            sighting(x.complaint_id, [GRASS, GRASS_AGAIN][i % 2], complainant={"phone": phone}, region=region)
        )
        assert matter in ("", r.matter_id)
        matter = r.matter_id
        assert store.set_decision(x)

    def placed(upto: int) -> tuple[list[DecisionFacts], list[RecordedEvent]]:
        return (
            [x for x in decisions if x.received_at <= upto],
            [r for r in events if r.event.occurred_at <= upto],
        )

    def same(got: MatterState | None, want: MatterState) -> None:
        assert got is not None
        assert dataclasses.replace(got, last_outcome_event="") == dataclasses.replace(
            want, last_outcome_event=""
        )

    if order == "decisions late":
        for i, x in enumerate(reversed(decisions)):
            decide(i, x)
        same(store.state(matter), fold(matter, decisions, []))
        for r in events:
            store.record_event(dataclasses.replace(r.event, matter_id=matter))
    elif order == "events first":
        decide(0, decisions[0])
        kept = []
        for r in events:
            try:
                store.record_event(dataclasses.replace(r.event, matter_id=matter))
                kept.append(dataclasses.replace(r, event_id=""))
            except EventRejected:
                pass
        for i, x in enumerate(decisions[1:], 1):
            decide(i, x)
            same(store.state(matter), fold(matter, decisions[: i + 1], kept))
        events = kept
    else:
        timeline = sorted(
            [(x.received_at, 0, x) for x in decisions] + [(r.event.occurred_at, 1, r) for r in events],
            key=lambda t: (t[0], t[1]),
        )
        for i, (at, _, item) in enumerate(timeline):
            if isinstance(item, DecisionFacts):
                decide(i, item)
            else:
                store.record_event(dataclasses.replace(item.event, matter_id=matter))
            ds, es = placed(at)
            same(store.state(matter), fold(matter, ds, [dataclasses.replace(r, event_id="") for r in es]))
    same(store.state(matter), fold(matter, decisions, [dataclasses.replace(r, event_id="") for r in events]))


def test_the_overdue_of_a_township_is_an_index_range_scan(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    s.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    try:
        from fenliu.matter import _sql

        for col in ("", "township", "colour", "owner_department"):
            sql = _sql.OVERDUE_SQL.format(where="next_due < ?" + (f" AND {col} = ?" if col else ""), p="?")
            params = (1, "x", 10) if col else (1, 10)
            plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            index = f"matter_state_{col}_due" if col else "matter_state_due"
            assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        conn.close()


@per_backend
def test_open_and_overdue_counts_by_township_colour_tier_owner(store: MatterStore) -> None:
    a = decided(store, "a", GRASS, "dec-a", T0, township="150626101", colour="RED")
    decided(store, "b", WAGE, "dec-b", T0, township="150626101", colour="RED", phone="13900000000")
    c = decided(store, "c", "牧区饮水井坏了半年没人修，全村人畜饮水困难。", "dec-c", T0, phone="13700000000")
    store.record_event(event("af", "FIRST_CONTACT", T0 + H, matter_id=a))
    store.record_event(event("cr", "RESOLVED", T0 + H, matter_id=c))
    counts = store.open_counts(T0 + 2 * DAY)
    assert [(x.township, x.colour, x.tier, x.owner_department, x.open, x.overdue) for x in counts] == [
        ("150626101", "RED", "TOWNSHIP", "township_government", 2, 1),
    ]
    assert store.open_counts(T0)[0].overdue == 0


@per_backend
def test_outcomes_count_each_resolution_once_by_the_level_that_settled_it(store: MatterStore) -> None:
    a = decided(store, "a", GRASS, "dec-a", T0, township="150626101")
    b = decided(store, "b", WAGE, "dec-b", T0 + DAY, township="150626101", phone="13900000000")
    c = decided(store, "c", "牧区饮水井坏了半年没人修，全村人畜饮水困难。", "dec-c", T0, phone="13700000000")
    store.record_event(event("ax", "EXTENDED", T0 + H, matter_id=a))
    store.record_event(event("ar", "RESOLVED", T0 + 2 * DAY, matter_id=a, actor_level="VILLAGE"))
    store.record_event(event("ae", "EVALUATED", T0 + 3 * DAY, matter_id=a, satisfaction="SATISFIED"))
    store.record_event(event("ae2", "REVISITED", T0 + 4 * DAY, matter_id=a, satisfaction="BASICALLY"))
    store.record_event(event("bf", "FAILED", T0 + 2 * DAY, matter_id=b))
    # b moves on and is settled at the banner, c is withdrawn
    assert store.record(sighting("b2", WAGE, complainant={"phone": "13900000000"})).matter_id == b
    assert store.set_decision(
        decision("dec-b2", T0 + 3 * DAY, cid="b2", stage="ARBITRATION", township="150626101")
    )
    store.record_event(event("br", "RESOLVED", T0 + 5 * DAY, matter_id=b, actor_level="BANNER"))
    store.record_event(event("be", "EVALUATED", T0 + 6 * DAY, matter_id=b, satisfaction="DISSATISFIED"))
    store.record_event(event("cw", "WITHDRAWN", T0 + DAY, matter_id=c))
    rows = {r.township: r for r in store.outcomes(T0, T0 + 30 * DAY)}
    one = rows["150626101"]
    assert (one.received, one.resolved, one.resolved_grassroots, one.failed_or_refused) == (2, 2, 1, 1)
    assert (one.extended, one.evaluated, one.satisfied, one.basically, one.dissatisfied) == (1, 2, 1, 0, 1)
    assert (one.withdrawn, one.open_at_end, one.overdue_at_end) == (0, 0, 0)
    other = rows[TWP]
    assert (other.received, other.withdrawn, other.resolved) == (1, 1, 0)
    # a window before the resolutions: received, nothing resolved, both open and overdue at its end
    early = {r.township: r for r in store.outcomes(T0, T0 + DAY + H)}["150626101"]
    assert (early.received, early.resolved, early.extended) == (2, 0, 1)
    assert store.outcomes(T0 - 10 * DAY, T0 - DAY) == []


def test_a_guarded_store_answers_events_within_its_deadline_and_never_queues(tmp_path: Path) -> None:
    from fenliu.matter import GuardedStore, StoreUnavailable

    inner = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    guarded = GuardedStore(inner, tmp_path / "queue", deadline_s=2.0, event_deadline_s=0.3)
    try:
        m = decided(guarded, "a", GRASS, "dec-a", T0)
        _, ok, st = guarded.record_event(event("k", "ACCEPTED", T0 + H, matter_id=m))
        assert ok and st == guarded.state(m) and [r.event.idempotency_key for r in guarded.events(m)] == ["k"]
        with pytest.raises(EventRejected):
            guarded.record_event(event("x", "EXTENDED", T0 + H, matter_id=m, extension_days=40))
        with pytest.raises(UnknownMatter):
            guarded.record_event(event("y", "ACCEPTED", T0 + H, matter_id="m-none"))
        blocker = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the store cannot answer
        try:
            with pytest.raises(StoreUnavailable):
                guarded.record_event(event("z", "PLAN_MADE", T0 + 2 * H, matter_id=m))
        finally:
            blocker.rollback()
            blocker.close()
        assert guarded.pending() == 0  # events are not queued
    finally:
        guarded.close()


def test_a_decisions_write_back_answers_within_the_deadline_and_lands_when_the_store_answers(
    tmp_path: Path,
) -> None:
    """Another writer holds the database when a decision is written back: the call returns at the
    guard's deadline, not after the store's busy timeout (5 s), and the write goes on and lands once the
    database is free."""
    from fenliu.matter import GuardedStore

    inner = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    guarded = GuardedStore(inner, tmp_path / "queue", deadline_s=0.2)
    try:
        r = guarded.record(sighting("a", GRASS, complainant={"phone": PHONE}))
        assert r.available
        blocker = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            start = time.monotonic()
            assert guarded.set_decision(decision("dec-a", T0, cid="a")) is False
            assert time.monotonic() - start < 2.5
        finally:
            blocker.rollback()
            blocker.close()
        end = time.monotonic() + 10
        while inner.state(r.matter_id) is None and time.monotonic() < end:
            time.sleep(0.05)
        st = inner.state(r.matter_id)
        assert st is not None and st.rounds == 1 and st.owner_department == "township_government"
        assert guarded.pending() == 0  # written, not queued
    finally:
        guarded.close()
