"""The durable_rules engine and the plain Python interpretation of the same pack agree on everything.

Both decide without memoization, so every one of these complaints really runs through durable_rules.
The comparison is on the whole outcome: every output field, the guidance, and the full trace.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from conftest import WUSHEN
from fenliu.engine import Decider
from fenliu.model import complaint_from_dict
from fenliu.pack import load_pack
from strategies import complaints

PACK = load_pack(WUSHEN)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(PACK))
def test_durable_and_interpreter_agree(
    durable_decider: Decider, python_decider: Decider, data: dict[str, Any]
) -> None:
    c = complaint_from_dict(data)
    assert durable_decider.outcome(c) == python_decider.outcome(c)


MEMO = Decider(PACK, backend="durable", memoize=True, cache_size=512)


@settings(max_examples=2_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(PACK))
def test_memoized_outcome_equals_fresh_evaluation(python_decider: Decider, data: dict[str, Any]) -> None:
    c = complaint_from_dict(data)
    first = MEMO.outcome(c)
    assert first == python_decider.outcome(c)
    assert MEMO.outcome(c) == first


def test_differential_actually_ran_the_engine(durable_decider: Decider) -> None:
    assert durable_decider._durable is not None  # the engine, not a fallback, decided above
    assert durable_decider.fallbacks == 0


@settings(max_examples=3_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(PACK))
def test_keyword_automaton_finds_exactly_the_words_present(data: dict[str, Any]) -> None:
    from fenliu.compiler import normalize_text

    cp = COMPILED
    c = complaint_from_dict(data)
    _key, present = cp.read(c)
    text = normalize_text(c.title + "\n" + c.text)
    assert present == frozenset(w for w in cp.words if w in text)


COMPILED = MEMO.compiled
