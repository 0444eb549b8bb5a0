"""The enrichment seam: ordered enrichers, declared fields, a Store for the stateful ones."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fenliu import Complaint, Decider, MemoryStore, Store, complaint_from_dict, load_pack
from fenliu.engine.enrich import Enrichment

PACK = load_pack(Path(__file__).resolve().parents[1] / "rules" / "wushen")


class Seen:
    """A stateful enricher for the test: sets model_agrees once the same words were seen before."""

    name = "seen"
    adds: tuple[str, ...] = ("model_agrees",)

    def __init__(self, store: Store) -> None:
        self.store = store
        self.order: list[str] = []

    def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None:
        key = f"t{hash(text)}"
        self.order.append(str(derived.get("text_category", "")))
        derived["model_agrees"] = self.store.get(key) is not None
        self.store.put(key, 1)


class Rogue:
    name = "rogue"
    adds: tuple[str, ...] = ("model_agrees",)

    def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None:
        derived["model_category"] = "labor_dispute"


def test_enrich_seam_extra_enricher_runs_after_the_packs_and_reads_its_store() -> None:
    store = MemoryStore()
    seen = Seen(store)
    d = Decider(PACK, backend="python", text_model=False, enrichers=[seen])
    c = complaint_from_dict({"id": "a", "text": "老板拖欠我三个月工资不给"})
    first = d.enrichment(c)
    again = d.enrichment(complaint_from_dict({"id": "b", "text": "老板拖欠我三个月工资不给"}))
    assert first.model_agrees is False and again.model_agrees is True
    assert seen.order[0] == first.text_category != ""  # the lexicon ran first
    assert len(store) == 1
    assert d.enrichment.adds[-1] == "model_agrees"


def test_enrich_seam_refuses_undeclared_and_twice_added_fields() -> None:
    class Bad:
        name = "bad"
        adds: tuple[str, ...] = ("history_count", "text_category")

        def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None: ...

    class Lex:
        name = "lex"
        adds: tuple[str, ...] = ("text_category",)

        def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None: ...

    with pytest.raises(ValueError) as e:
        Enrichment([Lex(), Bad()])
    assert "'history_count' is not a derived complaint field" in str(e.value)
    assert "'text_category' is added by lex already" in str(e.value)


def test_enrich_seam_refuses_an_enricher_writing_beyond_its_declaration() -> None:
    with pytest.raises(ValueError, match="enricher rogue set fields it does not declare"):
        Enrichment([Rogue()])(complaint_from_dict({"id": "r", "text": "x"}))


def test_enrich_seam_memory_store_from_many_threads() -> None:
    store = MemoryStore()

    def put(t: int) -> None:
        for i in range(500):
            store.put(f"{t}-{i}", i)

    threads = [threading.Thread(target=put, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(store) == 2000
    assert store.get("3-499") == 499
    assert store.get("missing") is None


def test_enrich_seam_one_pass_gives_the_first_enrichers_alone_and_all_of_them() -> None:
    """``through(c, n)`` is (the first n enrichers alone, all of them): what ``fenliu score`` reads
    as the lexicon alone and as both, from one lexicon pass."""
    d = Decider(PACK, backend="python")
    try:
        full = d.enrichment
        assert [e.name for e in full.enrichers[:2]] == ["lexicon", "model"]
        first = Enrichment(full.enrichers[:1])
        texts = ["邻居家的排水管把我家院墙泡塌了", "干了三个月一分没见着", "谢谢你们", "草场网围栏被拆了"]
        for i, text in enumerate(texts):
            c = complaint_from_dict({"id": f"t{i}", "text": text})
            alone, whole = full.through(c, 1)
            assert alone == first(c) and whole == full(c)
            assert (
                alone.enriched and alone.model_category == "" and alone.text_category == whole.text_category
            )
            assert full.through(c, len(full.enrichers)) == (whole, whole)
            assert full.through(whole, 1) == (whole, whole)  # an enriched complaint is left as it is
    finally:
        d.close()
