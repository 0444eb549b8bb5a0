"""Memoization is invisible: shared outcomes never leak one complaint's details into another's decision."""

from __future__ import annotations

from fenliu import convert
from fenliu.engine import Decider
from fenliu.model import complaint_from_dict
from fenliu.pack import Pack


def test_shared_outcome_keeps_each_complaints_matched_keywords(wushen: Pack) -> None:
    decider = Decider(wushen, memoize=True)
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

    from fenliu.engine import _decision_id

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
