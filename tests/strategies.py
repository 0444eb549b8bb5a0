"""Hypothesis strategies for valid complaints that exercise the reference pack's edges."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from fenliu import Pack
from fenliu.domain import model
from fenliu.packs.types import Keywords, iter_tests

FILLER = [
    "我们",
    "反映",
    "情况",
    "已经很久了",
    "请领导帮忙",
    "村里",
    "旗里",
    "没人管",
    "。",
    "，",
    "希望尽快处理",
    " ",
    "ABC",
    "１２３",
]
PEOPLE = [0, 1, 2, 3, 4, 5, 9, 10, 11, 29, 30, 31, 200]
AMOUNTS = [0.0, 99_999.0, 99_999.99, 100_000.0, 100_000.5, 999_999.0, 1_000_000.0, 5e6]


def keywords_of(pack: Pack) -> list[str]:
    words: set[str] = set()
    for rule in pack.rules:
        for leaf in iter_tests(rule.when):
            if isinstance(leaf, Keywords):
                words.update(leaf.words)
    for entry in pack.lexicon:  # the words the lexicon scores (terms, together, against)
        words.update(entry.words)
    return sorted(words)


def hints_of(pack: Pack) -> list[str]:
    out = ["bogus", "  ", "LABOR", "劳动"]
    for code, row in pack.categories.items():
        out += [code, code.upper(), f" {code} ", str(row.get("name", code))]
    return out


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def complaints(pack: Pack) -> st.SearchStrategy[dict[str, Any]]:
    words = keywords_of(pack)
    text = st.lists(st.sampled_from(words + FILLER), min_size=0, max_size=8).map("".join)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        c: dict[str, Any] = {"id": f"c{draw(st.integers(0, 10**9))}"}
        body = draw(text)
        hint = draw(optional(st.sampled_from(hints_of(pack))))
        if not body.strip() and not (hint or "").strip():
            body = draw(st.sampled_from(words))
        c["text"] = body
        if draw(st.booleans()):
            c["title"] = draw(text)
        if hint is not None:
            c["category_hint"] = hint
        for name, values in model.COMPLAINT_ENUMS.items():
            v = draw(optional(st.sampled_from(values)))
            if v is not None:
                c[name] = v
        for name in model.COMPLAINT_BOOLS:
            v = draw(optional(st.booleans()))
            if v is not None:
                c[name] = v
        c["people_involved"] = draw(st.one_of(st.sampled_from(PEOPLE), st.integers(0, 100)))
        c["repeat_visits"] = draw(st.integers(0, 5))
        c["amount_yuan"] = draw(st.one_of(st.sampled_from(AMOUNTS), st.floats(0, 3e6, allow_nan=False)))
        if draw(st.integers(0, 9)) == 0:
            c["existing_case_id"] = draw(st.sampled_from(["CASE-1", "", "XF2026-0001"]))
        if draw(st.booleans()):
            c["region"] = {"township_code": draw(st.sampled_from(["150626100", "150626101"]))}
        return c

    return build()
