"""One memoized Decider shared by many threads decides as the plain interpreter does.

The service shares one Decider per process across gRPC's threads (``Triage.decide``), so its memories
are read and filled concurrently; small bounds force them to start afresh while walks are in flight.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from fenliu import Complaint, Decider, Outcome, complaint_from_dict, load_pack

ROOT = Path(__file__).resolve().parents[1]
PACK = load_pack(ROOT / "rules" / "wushen")
CORPUS = [json.loads(line) for line in (ROOT / "corpus" / "complaints.jsonl").read_text("utf-8").splitlines()]
THREADS = 8


def _varied(n: int, seed: int = 17) -> list[Complaint]:
    """Corpus complaints with their numbers and flags shuffled: many classes of input."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        d: dict[str, Any] = dict(CORPUS[i % len(CORPUS)])
        d["id"] = f"t-{i}"
        d["people_involved"] = rng.choice([0, 1, 3, 5, 10, 11, 30, 31, 200])
        d["repeat_visits"] = rng.choice([0, 1, 2, 3, 4])
        d["amount_yuan"] = rng.choice([0.0, 99_999.0, 100_000.0, 1_000_000.0])
        for flag in ("vulnerable", "extreme_risk", "escalation_intent", "sensitive_period", "cross_village"):
            d[flag] = rng.random() < 0.2
        out.append(complaint_from_dict(d))
    return out


def _wrong_concurrently(
    decider: Decider, complaints: list[Complaint], expected: list[Outcome]
) -> dict[int, list[str]]:
    """Per thread, the ids of the complaints whose outcome differs from ``expected`` (each thread
    decides every complaint, in its own order); only the differences are kept, not the outcomes."""
    wrong: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(t: int) -> None:
        order = list(range(len(complaints)))
        random.Random(t).shuffle(order)
        mine: list[str] = []
        start.wait()
        try:
            for i in order:
                if decider.outcome(complaints[i]) != expected[i]:
                    mine.append(complaints[i].id)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        wrong[t] = mine

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors
    assert len(wrong) == THREADS
    return wrong


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["python", "durable"])
@pytest.mark.parametrize("cache_size", [64, 4096])
def test_memo_threads_shared_decider_agrees_with_the_interpreter(
    python_decider: Decider, backend: str, cache_size: int
) -> None:
    complaints = _varied(1500)
    expected = [python_decider.outcome(c) for c in complaints]
    shared = Decider(PACK, backend=backend, memoize=True, cache_size=cache_size)
    try:
        for t, wrong in _wrong_concurrently(shared, complaints, expected).items():
            assert not wrong, f"thread {t}: {len(wrong)} outcomes differ, e.g. {wrong[:5]}"
        assert shared.fallbacks == 0
    finally:
        shared.close()


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_memo_threads_tiny_memories_and_frequent_switches_agree_with_the_interpreter(
    python_decider: Decider, backend: str
) -> None:
    """Threads switched every microsecond, memories so small they start afresh every few decisions:
    a walk is interrupted between any two lookups, and writes race the clearing of what they write to."""
    complaints = _varied(240, seed=5)
    expected = [python_decider.outcome(c) for c in complaints]
    shared = Decider(PACK, backend=backend, memoize=True, cache_size=8)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        wrong = _wrong_concurrently(shared, complaints, expected)
    finally:
        sys.setswitchinterval(interval)
        shared.close()
    for t, ids in wrong.items():
        assert not ids, f"thread {t}: {len(ids)} outcomes differ, e.g. {ids[:5]}"
    assert shared.fallbacks == 0
    assert shared.memory_nodes < 8 + len(shared.compiled.stages)  # the graph started afresh, many times


def test_memo_threads_one_class_one_outcome_object_whatever_the_thread() -> None:
    """The memories' sharing holds under threads too: complaints of one class decided concurrently get
    one outcome object (one transition per signature, one outcome per path), not copies of equal ones."""
    complaints = _varied(240, seed=9)
    shared = Decider(PACK, backend="python", memoize=True)
    got: dict[int, list[Outcome]] = {}
    start = threading.Barrier(THREADS)

    def run(t: int) -> None:
        start.wait()
        got[t] = [shared.outcome(c) for c in complaints]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
    finally:
        sys.setswitchinterval(interval)
    assert len(got) == THREADS
    copies = [c.id for i, c in enumerate(complaints) if len({id(got[t][i]) for t in got}) > 1]
    assert not copies, f"{len(copies)} complaints got equal but distinct outcomes, e.g. {copies[:5]}"
