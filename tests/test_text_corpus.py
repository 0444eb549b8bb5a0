"""The shipped labelled corpus, its fixed split, and the reference pack measured on its test split."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fenliu import Triage

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "corpus" / "labelled.jsonl"
WUSHEN = ROOT / "rules" / "wushen"
DOC = ROOT / "docs" / "text.md"


def _rows() -> list[dict[str, str]]:
    return [json.loads(x) for x in LABELLED.read_text("utf-8").splitlines() if x.strip()]


def test_corpus_has_every_category_eighty_times_and_unclassifiable_ones() -> None:
    rows = _rows()
    assert len(rows) >= 2500
    counts = Counter(r["category"] for r in rows)
    cats = set(counts)
    from fenliu import load_pack

    expected = set(load_pack(WUSHEN).categories)
    assert cats <= expected
    assert cats == expected, f"missing: {expected - cats}"
    low = {c: n for c, n in counts.items() if c != "unclassified" and n < 80}
    assert not low, low
    assert counts["unclassified"] > 0
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["text"] for r in rows}) == len(rows)  # no two complaints say the same


def test_pack_carries_the_test_split_its_floors_are_measured_on() -> None:
    carried = (WUSHEN / "text_floors.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(x) for x in carried] == [r for r in _rows() if r["split"] == "test"]


def test_split_is_the_fixed_stratified_one() -> None:
    sys.path.insert(0, str(ROOT))
    from tools.split_corpus import split

    rows = _rows()
    # written in six rounds (parts a and b; c and d; e; f; g; h, by other writers): each round split on its
    # own, and no later round moved a complaint of an earlier one between the splits
    rounds = [
        [r for r in rows if r["id"][:2] in prefixes]
        for prefixes in (("a-", "b-"), ("c-", "d-"), ("e-",), ("f-",), ("g-",), ("h-",))
    ]
    assert sum(map(len, rounds)) == len(rows) and all(rounds)
    bare = [[{k: v for k, v in r.items() if k != "split"} for r in part] for part in rounds]
    earlier: list[dict[str, object]] = []
    for part, plain in zip(rounds, bare, strict=True):
        assert [r["split"] for r in split(earlier + plain)] == [r["split"] for r in earlier + part]
        earlier += part
    for part in rounds:
        for cat, n in Counter(r["category"] for r in part).items():
            test = sum(1 for r in part if r["category"] == cat and r["split"] == "test")
            assert abs(test - 0.2 * n) <= 1


@pytest.mark.slow
def test_score_table_in_the_docs_is_what_fenliu_score_prints() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fenliu.cli",
            "score",
            "rules/wushen",
            "corpus/labelled.jsonl",
            "--split",
            "test",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    doc = DOC.read_text("utf-8")
    shown = doc.split("<!-- score:begin -->\n", 1)[1].split("<!-- score:end -->", 1)[0]
    assert shown == res.stdout


@pytest.mark.slow
def test_reference_pack_passes_its_floors_with_its_model() -> None:
    triage = Triage.from_path(WUSHEN)  # loads, lints, runs the cases and the floors on the test split
    decider = triage.decider
    assert decider is not None
    assert [e.name for e in decider.enrichment.enrichers] == ["lexicon", "model"]
    assert decider.pack.text.floors
