"""The durable_rules engine and the plain Python interpretation of the same pack agree on everything.

Both decide without memoization, so every one of these complaints really runs through durable_rules.
The comparison is on the whole outcome: every output field, the guidance, and the full trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import WUSHEN
from fenliu import Decider, complaint_from_dict, load_pack
from strategies import complaints

PACK = load_pack(WUSHEN)


@settings(max_examples=2_500, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(PACK))
def test_durable_and_interpreter_agree(
    durable_decider: Decider, python_decider: Decider, data: dict[str, Any]
) -> None:
    c = complaint_from_dict(data)
    assert durable_decider.outcome(c) == python_decider.outcome(c)


MEMO = Decider(PACK, backend="durable", memoize=True, cache_size=512)


@settings(max_examples=1_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(PACK))
def test_memoized_outcome_equals_fresh_evaluation(python_decider: Decider, data: dict[str, Any]) -> None:
    c = complaint_from_dict(data)
    first = MEMO.outcome(c)
    assert first == python_decider.outcome(c)
    assert MEMO.outcome(c) == first


def test_differential_actually_ran_the_engine(durable_decider: Decider) -> None:
    assert durable_decider.matcher.name == "durable"  # the engine, not a fallback, decided above
    assert durable_decider.fallbacks == 0


@settings(max_examples=1_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(PACK))
def test_keyword_automaton_finds_exactly_the_words_present(data: dict[str, Any]) -> None:
    from fenliu.compiling.compiler import normalize_text

    cp = COMPILED
    c = complaint_from_dict(data)
    _key, present = cp.read(c)
    text = normalize_text(c.title + "\n" + c.text)
    assert present == frozenset(w for w in cp.words if w in text)


COMPILED = MEMO.compiled


def _generated_compiled(n: int) -> Any:
    import sys
    import tempfile

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench import genpack

    from fenliu import compile_pack

    return compile_pack(load_pack(genpack.write_pack(n, Path(tempfile.mkdtemp(prefix="fenliu-ac-")) / "g")))


GENERATED = _generated_compiled(500)  # 500 keywords, many of them inside one another


@settings(max_examples=1_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.one_of(st.sampled_from(sorted(GENERATED.words)), st.text(max_size=3)), min_size=1, max_size=40
    )
)
def test_keyword_automaton_finds_exactly_the_words_present_among_500(pieces: list[str]) -> None:
    text = "".join(pieces)
    found = frozenset(GENERATED.automaton.find_matches_as_strings(text, overlapping=True))
    assert found == frozenset(w for w in GENERATED.words if w in text)


def test_memoized_outcomes_equal_the_interpreter_on_generated_packs(tmp_path: Path) -> None:
    # Packs of 200 and 500 rules (bench/genpack.py): hundreds of categories, keyword groups and
    # thresholds, so the classes of each stage's input (coarser per stage than per pack) are many and
    # different stages see different parts of them. Every memoized answer, first and again, must be
    # what the plain interpretation gives.
    import sys

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench import corpus, genpack

    complaints_ = [complaint_from_dict(x) for x in corpus.generate(1500, seed=11)]
    for n in (200, 500):
        pack = load_pack(genpack.write_pack(n, tmp_path / f"gen{n}"))
        memo = Decider(pack, memoize=True, cache_size=3000)  # small: the graph starts afresh on the way
        plain = Decider(pack, backend="python", memoize=False)
        try:
            for c in complaints_:
                expected = plain.outcome(c)
                assert memo.outcome(c) == expected, c.id
            for c in complaints_[:300]:
                assert memo.outcome(c) == plain.outcome(c), c.id
            assert memo.stage_hits > memo.stage_misses  # the memories were used, not bypassed
        finally:
            memo.close()
            plain.close()
