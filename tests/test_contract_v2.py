"""Contract v2 in the reference pack: only the intended fields change, and only where each item says.

The pack as it was before (``tests/packs/wushen-2026.11.1``) and the live pack decide the same generated
complaints, on the real engine. Each item of v2 is allowed to change its own fields for the complaints it
concerns, and nothing else may change:

* wage_arrears, land_rights and grassland are arbitration first: ``stage`` (LITIGATE → ARBITRATE after
  an intent to sue or a failed or refused mediation), ``path`` (ARBITRATE ahead of LITIGATE) and
  ``statutory_route``, for those three categories only;
* an excluded complaint has no statutory route: ``statutory_route`` of an excluded labour or personnel
  dispute with an intent to sue (it was given the arbitration route);
* legal_aid's 7-day decision: ``plan_by`` for BLUE legal_aid only (none → 7 days);
* guidance follows the stage: ``guidance`` only where a stage is ARBITRATE or LITIGATE.

What the validation layer settles (whitespace-only strings are absent; ``unclassified``/未分类 are not
hints; NFKC) holds for both packs alike: it is checked here as "decides exactly as the field absent",
on the JSON path and over gRPC on a real port.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import WUSHEN
from fenliu import Complaint, ComplaintError, Decider, Outcome, Triage, complaint_from_dict, load_pack
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.domain.model import DECIDED_FIELDS
from fenliu.serving.convert import complaint_to_proto, decision_from_proto
from grpc_helpers import RECEIVED_AT, comparable, serving, stub_for
from strategies import complaints

OLD_PATH = Path(__file__).resolve().parent / "packs" / "wushen-2026.11.1"
OLD = Decider(load_pack(OLD_PATH))
NEW_PACK = load_pack(WUSHEN)
NEW = Decider(NEW_PACK)

ARBITRATION_FIRST_NOW = {"wage_arrears", "land_rights", "grassland"}
ONWARD = {"ARBITRATE", "LITIGATE"}
FAILED = {"FAILED", "REFUSED"}
#: Fields no item of v2 changes between the two packs.
UNCHANGED = DECIDED_FIELDS[
    : DECIDED_FIELDS.index("stage")
]  # the funnel (stage, path, deadlines) is what moved
BLANKS = [" ", "\u3000", "\t\n ", "\u00a0\u3000"]


def _fields(o: Outcome) -> dict[str, Any]:
    return {
        **{f: getattr(o, f) for f in UNCHANGED},
        "stage": o.stage,
        "path": o.path,
        "statutory_route": o.statutory_route,
        "within": dict(o.within),
        "guidance": o.guidance,
    }


def _classified_alike(c: Complaint) -> Complaint:
    """The complaint with the category the live pack gives it as its hint, so that both packs classify it
    alike. How the citizen's words are read (the lexicon and the text model, docs/text.md) is no item of
    contract v2, and the old pack has only the contract's starter keywords: the items here are compared on
    the same category. A complaint the live pack leaves unclassified is compared as it is."""
    category = NEW.outcome(c).category
    if category == "unclassified":
        assume(OLD.outcome(c).category == "unclassified")
        return c
    return dataclasses.replace(c, category_hint=category)


def _sent_on(c: Complaint) -> bool:
    """What moves a complaint past mediation: an intent to sue, or a mediation that failed or was refused."""
    return c.intent == "LITIGATION" or (c.last_stage == "MEDIATE" and c.last_outcome in FAILED)


@settings(max_examples=450, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(NEW_PACK))
def test_v2_changes_only_the_intended_fields_of_the_complaints_each_item_concerns(
    data: dict[str, Any],
) -> None:
    c = _classified_alike(complaint_from_dict(data))
    old, new = OLD.outcome(c), NEW.outcome(c)
    before, after = _fields(old), _fields(new)
    changed = {k for k in before if before[k] != after[k]}
    for k in UNCHANGED:
        assert k not in changed, k
    handled = not new.excluded
    arbitration_first = handled and new.category in ARBITRATION_FIRST_NOW

    # arbitration first: LITIGATE becomes ARBITRATE exactly where the complaint is sent on from mediation
    # (or sues) and was not handled at ARBITRATE or LITIGATE already.
    moved_on_after_arbitration = c.last_stage in ONWARD and c.last_outcome in FAILED
    expect_stage_change = arbitration_first and _sent_on(c) and not moved_on_after_arbitration
    assert ("stage" in changed) == expect_stage_change
    if "stage" in changed:
        assert (old.stage, new.stage) == ("LITIGATE", "ARBITRATE")
    # path: arbitration is now ahead of every stage before it, for the three categories only.
    if "path" in changed:
        assert arbitration_first
    if arbitration_first:
        ahead = new.stage in ("CONSULT", "ASSESS", "MEDIATE")
        assert ("ARBITRATE" in new.path) == ahead
        assert ("path" in changed) == (ahead or "stage" in changed)
    # statutory_route: the three categories' own routes; and an excluded labour or personnel dispute
    # that would sue no longer gets the arbitration route (an excluded complaint has none).
    excluded_labour_suit = (
        new.excluded and new.category in ("labor_dispute", "personnel_dispute") and c.intent == "LITIGATION"
    )
    assert ("statutory_route" in changed) == (arbitration_first or excluded_labour_suit)
    if new.excluded:
        assert new.statutory_route == ""

    # legal_aid: a BLUE one now plans within 7 days; RED and YELLOW keep theirs; nothing else moves.
    blue_legal_aid = handled and new.category == "legal_aid" and new.color == "BLUE"
    if "within" in changed:
        diff = {
            k
            for k in before["within"].keys() | after["within"].keys()
            if before["within"].get(k) != after["within"].get(k)
        }
        assert diff == {"plan_by"}
        assert (before["within"].get("plan_by"), after["within"]["plan_by"]) == (None, 7 * 24)
    assert ("within" in changed) == blue_legal_aid

    # guidance: only for a complaint sent on to arbitration or court; there it names who decides next
    # and what the 代办员 helps with, and never promises on-the-spot mediation. (An excluded labour suit
    # is no longer told to apply for arbitration: only where to go.)
    if "guidance" in changed:
        assert (handled and (new.stage in ONWARD or old.stage in ONWARD)) or excluded_labour_suit
    if excluded_labour_suit:
        assert "先申请劳动人事争议仲裁" not in new.guidance and "先申请劳动人事争议仲裁" in old.guidance
    if handled and new.stage in ONWARD:
        assert "就地调处" not in new.guidance
        assert "代办员协助" in new.guidance
        decides = "人民法院" if new.stage == "LITIGATE" else ("仲裁委员会", "人民政府")
        assert any(who in new.guidance.rpartition("下一步")[2] for who in decides)
    if new.stage == "ARBITRATE" and new.category in ("land_rights", "grassland"):
        assert "人民政府依法作出处理决定" in new.guidance and "仲裁委员会" not in new.guidance


def test_v2_property_reaches_every_item() -> None:
    """The generated complaints above do reach what they check (a property that held for nothing proves
    nothing): one complaint per item, through the same comparison."""
    samples = {
        "stage": {"text": "包工头欠了我的工钱", "intent": "LITIGATION"},
        "path": {"text": "草场放牧"},
        "within": {"text": "请律师"},
        "guidance": {"text": "邻居排水", "last_stage": "MEDIATE", "last_outcome": "REFUSED"},
    }
    for item, data in samples.items():
        c = complaint_from_dict({"id": item, **data})
        before, after = _fields(OLD.outcome(c)), _fields(NEW.outcome(c))
        assert before[item] != after[item], item


# ----------------------------------------------------------------------------------------------------
# Validation: blank strings are absent; unclassified is no hint


def _shown(o: Outcome) -> dict[str, Any]:
    return {**_fields(o), "notes": o.notes}


def _decided(data: dict[str, Any]) -> dict[str, Any] | str:
    try:
        return _shown(NEW.outcome(complaint_from_dict(data)))
    except ComplaintError as e:
        return f"refused: {sorted(v.field for v in e.violations)}"


STRING_FIELDS = ["title", "text", "category_hint", "existing_case_id"]


@settings(max_examples=450, deadline=None, suppress_health_check=list(HealthCheck))
@given(complaints(NEW_PACK), st.sampled_from(STRING_FIELDS), st.sampled_from(BLANKS))
def test_a_blank_string_field_decides_as_the_field_absent(
    data: dict[str, Any], name: str, blank: str
) -> None:
    absent = {k: v for k, v in data.items() if k != name}
    assert _decided({**data, name: blank}) == _decided(absent)


@settings(max_examples=450, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    complaints(NEW_PACK),
    st.sampled_from(["unclassified", "UNCLASSIFIED", " unclassified ", "未分类", "ｕｎｃｌａｓｓｉｆｉｅｄ"]),
)
def test_unclassified_hint_is_ignored_and_the_trace_says_so(data: dict[str, Any], hint: str) -> None:
    without = {k: v for k, v in data.items() if k != "category_hint"}
    if not without.get("text", "").strip():
        without["text"] = "邻居排水"
    c = complaint_from_dict({**without, "category_hint": hint})
    got = NEW.outcome(c)
    want = NEW.outcome(complaint_from_dict(without))
    assert _fields(got) == _fields(want)
    assert any("category_hint" in n and "ignored" in n for n in got.notes)
    assert "classify.hint" not in [t.rule for t in got.trace]


def test_hints_and_text_are_compared_after_nfkc() -> None:
    for hint in (
        "ＷＡＧＥ＿ＡＲＲＥＡＲＳ",
        "欠薪／农民工工资",
        "欠薪/农民\u2f2f\u2f2f资",
        "\u3000wage_arrears\u3000",
    ):
        o = NEW.outcome(complaint_from_dict({"id": "h", "category_hint": hint}))
        assert o.category == "wage_arrears" and not o.notes, hint
    o = NEW.outcome(complaint_from_dict({"id": "t", "text": "包工头欠了我的\u2f2f钱"}))
    assert o.category == "wage_arrears"


def test_blank_strings_become_absent_in_the_complaint() -> None:
    c = complaint_from_dict(
        {
            "id": "b",
            "text": "邻居排水",
            "title": "\u3000",
            "category_hint": " ",
            "existing_case_id": "\t",
            "region": {"banner_code": " ", "township_code": " 150626100 "},
            "complainant": {"name": "\u3000", "phone": " "},
        }
    )
    assert (c.title, c.category_hint, c.existing_case_id) == ("", "", "")
    assert dict(c.region) == {"township_code": "150626100"}
    assert (c.complainant.name, c.complainant.phone) == ("", "")
    with pytest.raises(ComplaintError) as info:
        complaint_from_dict({"id": "\u3000", "text": " ", "category_hint": "\t"})
    assert {v.field for v in info.value.violations} == {"id", "text"}


# ----------------------------------------------------------------------------------------------------
# The same over gRPC, on a real port


@pytest.fixture(scope="module")
def stub() -> Iterator[Any]:
    with serving(Triage.from_path(str(WUSHEN))) as (address, _), stub_for(address) as s:
        yield s


def _triage(stub: Any, data: dict[str, Any]) -> dict[str, Any]:
    resp = stub.Triage(pb.TriageRequest(complaint=complaint_to_proto(data), include_trace=True), timeout=10)
    return comparable(decision_from_proto(resp.decision, trace=True))


def test_grpc_blank_existing_case_id_is_no_duplicate(stub: Any) -> None:
    base = {"id": "g1", "text": "邻居家的排水沟对着我家院子", "received_at": RECEIVED_AT}
    for blank in BLANKS:
        d = _triage(stub, {**base, "existing_case_id": blank})
        assert (d["excluded"], d["exclusion"], d["existing_case_id"]) == (False, None, None), repr(blank)
        assert d == _triage(stub, base)
    dup = _triage(stub, {**base, "existing_case_id": "WS-2026-0137"})
    assert (dup["excluded"], dup["exclusion"]) == (True, "duplicate")


def test_grpc_blank_fields_decide_as_absent(stub: Any) -> None:
    base = {"id": "g2", "text": "我们几个农民工被欠工钱", "people_involved": 12, "received_at": RECEIVED_AT}
    want = _triage(stub, base)
    blanked = {
        **base,
        "title": "\u3000",
        "category_hint": "  ",
        "existing_case_id": "\t",
        "region": {"banner_code": " ", "township_code": "\u3000"},
    }
    assert _triage(stub, blanked) == want
    assert (want["category"], want["color"], want["approach"]) == ("wage_arrears", "RED", "JOINT")


def test_grpc_unclassified_hint_does_not_downgrade_twelve_migrant_workers(stub: Any) -> None:
    base = {
        "id": "g3",
        "text": "我们几个农民工在镇上干了大半年活，包工头到现在还欠着工钱。",
        "people_involved": 12,
    }
    for hint in ("unclassified", "未分类"):
        d = _triage(stub, {**base, "category_hint": hint, "received_at": RECEIVED_AT})
        assert (d["category"], d["color"], d["tier"], d["approach"]) == (
            "wage_arrears",
            "RED",
            "BANNER",
            "JOINT",
        )
        assert any("category_hint" in n for n in d["notes"])
