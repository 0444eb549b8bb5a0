"""Pack loading refuses what the memo's class abstraction cannot class (fenliu.engine.memo)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fenliu import Decider, Pack, PackError, load_pack
from fenliu.engine import memo
from fenliu.packs import types as P

PACK = load_pack(Path(__file__).resolve().parents[1] / "rules" / "wushen")


def _with_first_rule(pack: Pack, **changes: object) -> Pack:
    first = dataclasses.replace(pack.rules[0], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(pack, rules=(first, *pack.rules[1:]))


def test_memo_invariant_reference_pack_is_inside_it() -> None:
    assert memo.refusals(PACK) == []


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"when": P.All((P.Test("amount_yuan", "gt", ["1"], 3),))}, "other than constants"),
        ({"when": P.All((P.Test("amount_yuan", "approx", 1, 3),))}, "operator 'approx'"),
        (
            {"when": P.All((P.Test("complainant.phone", "eq", "x", 3),))},
            "no complaint, decision or table field",
        ),
        ({"then": {"category": P.Value("copy", source="history.count", line=4)}}, "copies 'history.count'"),
        ({"then": {"category": P.Value("script", line=4)}}, "'script' is not a value"),
    ],
    ids=["field-vs-non-constant", "unknown-operator", "unclassed-field", "copy-unclassed", "unknown-then"],
)
def test_memo_invariant_refuses_at_load(changes: dict[str, object], says: str) -> None:
    bad = _with_first_rule(PACK, **changes)
    (problem,) = memo.refusals(bad)
    assert problem.code == "memo-unsound"
    assert problem.rule == PACK.rules[0].id
    assert says in problem.message
    with pytest.raises(PackError) as e:
        Decider(bad, backend="python")
    assert any(p.code == "memo-unsound" for p in e.value.problems)
