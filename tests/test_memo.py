"""Memoization is invisible: shared outcomes never leak one complaint's details into another's decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fenliu import Decider, Decision, Pack, complaint_from_dict, load_pack
from fenliu._proto.fenliu.v1 import triage_pb2
from fenliu.serving import convert

# The reference pack with the keyword rules it classified by before its lexicon: the tests of how
# keyword groups are memoized build on it.
KEYWORDS = load_pack(Path(__file__).parent / "packs" / "keywords")
KEYWORDS_PLAIN = Decider(KEYWORDS, backend="python", memoize=False)


def test_shared_outcome_keeps_each_complaints_matched_keywords() -> None:
    decider = Decider(KEYWORDS, memoize=True)
    a = complaint_from_dict(
        {"id": "a", "text": "邻居家排水淹了院子", "received_at": "2026-03-01T09:00:00+08:00"}
    )
    b = complaint_from_dict(
        {"id": "b", "text": "邻里之间的通道被堵", "received_at": "2026-03-02T10:00:00+08:00"}
    )
    da, db = decider.decide(a), decider.decide(b)
    assert da.outcome is db.outcome  # one class of input: the second decision is a memoized hit
    assert decider.cache_hits == 1
    ta, tb = da.to_dict(trace=True)["trace"][0], db.to_dict(trace=True)["trace"][0]
    assert ta["rule"] == tb["rule"] == "classify.neighbor"
    assert ta["matched_keywords"] == ["邻居", "排水"]
    assert tb["matched_keywords"] == ["邻里", "通道"]
    pa, pb = convert.decision_to_proto(da, trace=True), convert.decision_to_proto(db, trace=True)
    assert list(pa.trace[0].matched_keywords) == ["邻居", "排水"]
    assert list(pb.trace[0].matched_keywords) == ["邻里", "通道"]
    assert (pa.complaint_id, pb.complaint_id) == ("a", "b")
    assert pa.deadlines.first_contact_by.seconds != pb.deadlines.first_contact_by.seconds
    assert convert.decision_to_proto(da, trace=False).trace == []


def test_stage_memo_serves_new_combinations_without_the_engine(wushen: Pack, python_decider: Decider) -> None:
    decider = Decider(wushen, memoize=True, cache_size=1)
    texts = ["拖欠农民工工资", "邻居排水", "草场放牧", "学校收费", "离婚抚养"]
    complaints = [
        complaint_from_dict(
            {
                "id": f"c{i}",
                "text": texts[i % 5],
                "people_involved": i % 40,
                "vulnerable": i % 3 == 0,
                "repeat_visits": i % 4,
            }
        )
        for i in range(400)
    ]
    for c in complaints:
        assert decider.outcome(c) == python_decider.outcome(c)
    # Matching is memoized per stage: far fewer engine evaluations than stages decided.
    assert decider.stage_misses < decider.stage_hits / 4


def test_decision_ids_are_random_uuid4_distinct_across_processes(wushen: Pack) -> None:
    import os
    import uuid

    from fenliu.engine.decider import _decision_id

    ids = {_decision_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    for i in list(ids)[:200]:
        u = uuid.UUID(hex=i)
        assert (u.version, u.variant, u.hex) == (4, uuid.RFC_4122, i)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's stream is its own, not a copy of the parent's
        os.write(w, _decision_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    os.close(r)
    os.close(w)
    assert child != _decision_id() and len(child) == 32


def test_outcomes_reached_differently_share_a_trace_free_template(wushen: Pack) -> None:
    """Without the trace a decision shows only its outcome's fields: outcomes that differ only in the
    rules that fired share one conversion template, and each decision still says exactly its own."""
    import random

    from bench import corpus

    decider = Decider(wushen, memoize=True)
    rng = random.Random(7)
    decisions = [decider.decide(complaint_from_dict(corpus.complaint(i, rng))) for i in range(600)]
    groups: dict[object, list[Decision]] = {}
    for d in decisions:
        groups.setdefault(convert._VISIBLE(d.outcome), []).append(d)
    shared = [g for g in groups.values() if len({tuple(t.rule for t in x.outcome.trace) for x in g}) > 1]
    assert shared, "the corpus should reach some outcome by two different paths"
    a, b = next((x, y) for g in shared for x in g for y in g if x.outcome.trace != y.outcome.trace)
    assert convert._template(a, False)[0] is convert._template(b, False)[0]
    assert convert._template(a, True)[0] is not convert._template(b, True)[0]
    for d in decisions:
        for trace in (False, True):
            # Serialized, the template's bytes and the complaint's own fields parse as the whole message.
            assert triage_pb2.Decision.FromString(
                convert.decision_to_wire(d, trace=trace)
            ) == convert.decision_to_proto(d, trace=trace)
            got = convert.decision_from_proto(convert.decision_to_proto(d, trace=trace), trace=trace)
            want = d.to_dict(trace=trace)
            assert {k: v for k, v in got.items() if k != "deadlines"} == {
                k: v for k, v in want.items() if k != "deadlines"
            }
            assert {k: v is None for k, v in got["deadlines"].items()} == {
                k: v is None for k, v in want["deadlines"].items()
            }


def test_a_stage_is_remembered_by_what_its_candidate_rules_read(tmp_path: Path) -> None:
    """Rules whose keyword group is absent, or that ask for another value of the stage's most tested
    field, cannot fire: facts that differ only in what such rules read are one class of the stage."""
    from bench import genpack

    from fenliu import load_pack
    from fenliu.packs.types import Keywords, Test

    pack = load_pack(genpack.write_pack(60, tmp_path / "g60"))
    cp = Decider(pack).compiled
    plan = next(p for p in cp.stages if p.name == "refine")
    assert plan.fields == ["category"] and plan.match_key is not None
    # refine rules: `category == X` and a keyword group of their own
    first, second = plan.rules[0], plan.rules[1]
    cat = next(c.value for c in first.when.items if isinstance(c, Test))  # type: ignore[attr-defined]
    other = next(c.value for c in second.when.items if isinstance(c, Test))  # type: ignore[attr-defined]
    assert cat != other

    def bit(rule: Any) -> int:
        kw = next(c for c in rule.when.items if isinstance(c, Keywords))
        return 1 << cp._bit[cp.keyword_of[kw.words]]

    def key(category: str, mask: int) -> tuple[Any, ...]:
        raw = [category]
        classes = [fn(v) if fn else v for v, fn in zip(raw, plan.abstractors, strict=True)]
        return plan.match_key(raw, classes, (mask,))

    # the second rule's keywords cannot matter to a complaint of the first rule's category ...
    assert key(cat, 0) == key(cat, bit(second))
    assert key(cat, bit(first)) == key(cat, bit(first) | bit(second))
    # ... but its own keywords do, and so does the category
    assert key(cat, 0) != key(cat, bit(first))
    assert key(other, bit(second)) != key(other, 0)
    assert key(cat, bit(first)) != key(other, bit(first))


def test_rules_that_read_nothing_in_common_are_matched_part_by_part() -> None:
    """Two classify rules with keyword groups of their own: once each has been matched alone, a
    complaint that has both groups is matched without the engine, and decided as the interpreter does."""
    decider = Decider(KEYWORDS, memoize=True)
    common = {"received_at": "2026-03-01T09:00:00+08:00", "people_involved": 2}
    a = complaint_from_dict({"id": "a", "text": "拖欠农民工工资", **common})
    b = complaint_from_dict({"id": "b", "text": "邻居排水淹了院子", **common})
    both = complaint_from_dict({"id": "ab", "text": "拖欠农民工工资，邻居排水淹了院子", **common})
    for c in (a, b):
        assert decider.outcome(c) == KEYWORDS_PLAIN.outcome(c)
    engine_runs = decider.stage_misses
    outcome = decider.outcome(both)
    assert decider.stage_misses == engine_runs  # no stage needed the engine
    assert outcome == KEYWORDS_PLAIN.outcome(both)
    assert {t.rule for t in outcome.trace} >= {"classify.wage_arrears", "classify.neighbor"}


def test_a_rule_whose_only_condition_is_a_keyword_group_fires_without_the_engine() -> None:
    """The first time a keyword-only rule's group is found, the rule is known to fire: its stage needs
    no engine for it (here the neighbour rule, which loses to the wage rule, so nothing else changes)."""
    decider = Decider(KEYWORDS, memoize=True)
    common = {"received_at": "2026-03-01T09:00:00+08:00", "people_involved": 2}
    a = complaint_from_dict({"id": "a", "text": "拖欠农民工工资", **common})
    b = complaint_from_dict({"id": "b", "text": "拖欠农民工工资，邻居也一样", **common})
    assert decider.outcome(a) == KEYWORDS_PLAIN.outcome(a)
    engine_runs = decider.stage_misses
    outcome = decider.outcome(b)
    assert decider.stage_misses == engine_runs  # the classify stage did not need the engine
    assert outcome == KEYWORDS_PLAIN.outcome(b)
    assert "classify.neighbor" in {t.rule for t in outcome.trace}


def test_walks_that_differ_only_in_their_trace_go_on_from_one_node() -> None:
    """Two complaints whose classify stage fires different rules with the same winner: the second walk
    needs one new edge, then goes on along the first one's nodes; each keeps its own trace."""
    common = {"received_at": "2026-03-01T09:00:00+08:00", "people_involved": 2}
    texts = {"a": "拖欠农民工工资", "b": "邻居排水淹了院子"}
    both = complaint_from_dict({"id": "ab", "text": texts["a"] + "，" + texts["b"], **common})
    winner = KEYWORDS_PLAIN.outcome(both).category
    single = next(
        c
        for c in (complaint_from_dict({"id": k, "text": t, **common}) for k, t in texts.items())
        if KEYWORDS_PLAIN.outcome(c).category == winner
    )
    decider = Decider(KEYWORDS, memoize=True)
    first = decider.outcome(single)
    size = decider.memory_nodes
    second = decider.outcome(both)
    assert decider.memory_nodes == size + 1  # one edge out of the root, to a node that exists
    assert (decider.cache_hits, decider.cache_misses) == (0, 2)
    assert first == KEYWORDS_PLAIN.outcome(single) and second == KEYWORDS_PLAIN.outcome(both)
    assert first.trace != second.trace and first.category == second.category == winner
    # and a third complaint like the second is a walk of known edges, with the second's outcome
    again = decider.outcome(
        complaint_from_dict({"id": "ab2", "text": texts["a"] + "。" + texts["b"], **common})
    )
    assert again is second and decider.cache_hits == 1


def test_a_decision_field_that_cannot_be_a_key_gets_a_node_of_its_own(wushen: Pack) -> None:
    """Nodes are found by their decision fields; a value that cannot be a dict key (no pack makes one
    today: lists become tuples) must not fail the decision, only go unshared."""
    from fenliu.engine.decider import _Node, _Transition

    decider = Decider(wushen, memoize=True)
    root = decider._roots[False]
    odd = _Node((*root.slots[:-1], ["not", "hashable"]), False)
    step = _Transition((), (), ("nothing",))
    first, second = decider._apply(odd, step, 0), decider._apply(odd, step, 0)
    assert first is not second and first.slots == odd.slots
    # a plain one is found again
    assert decider._apply(root, step, 0) is decider._apply(root, step, 0)


def test_a_trace_is_built_only_when_asked_for_and_is_the_interpreters(
    wushen: Pack, python_decider: Decider
) -> None:
    """Deciding builds no trace entry; asking for an outcome's trace builds it, equal to a fresh
    evaluation's, and the rules fired (what metrics count) agree with it without building it."""
    from bench import corpus

    decider = Decider(wushen, memoize=True)
    complaints = [complaint_from_dict(x) for x in corpus.generate(300, seed=11)]
    outcomes = [decider.outcome(c) for c in complaints]
    assert decider._explainer.entries == {}  # no entry built yet
    fired = [o.rules_fired for o in outcomes]
    assert decider._explainer.entries == {}
    for c, o, rules in zip(complaints, outcomes, fired, strict=True):
        want = python_decider.outcome(c)
        assert o.trace == want.trace and o == want
        assert rules == tuple((t.rule, t.layer) for t in want.trace)
    assert decider._explainer.entries  # built now, and shared
    # a decision shows its matched keywords through the lazily built trace
    d = decider.decide(complaints[0])
    assert d.to_dict(trace=True)["trace"] == python_decider.decide(complaints[0]).to_dict(trace=True)["trace"]


def test_a_dropped_decider_is_freed_without_the_cycle_collector(wushen: Pack) -> None:
    """A worker collects cycles seldom (supervisor.tune_gc), and every reload drops a decider with
    large memories: nothing it remembers (transitions waiting to explain their trace, conversion
    templates) may point back to it."""
    import gc
    import weakref

    from bench import corpus

    complaints = [complaint_from_dict(x) for x in corpus.generate(200, seed=5)]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        decider = Decider(wushen, memoize=True)
        for c in complaints:
            convert.decision_to_proto(decider.decide(c), trace=False)
        convert.decision_to_proto(decider.decide(complaints[0]), trace=True)
        ref = weakref.ref(decider)
        decider.close()
        del decider
        assert ref() is None
    finally:
        if was_enabled:
            gc.enable()
