"""Complaint validation: every bad field is named; no submitted value is ever echoed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fenliu import ComplaintError, complaint_from_dict


def _violations(data: object) -> dict[str, str]:
    with pytest.raises(ComplaintError) as exc:
        complaint_from_dict(data)
    return {v.field: v.description for v in exc.value.violations}


def test_complaint_minimal_gets_contract_defaults() -> None:
    c = complaint_from_dict({"id": "c1", "text": "邻居排水"})
    assert c.people_involved == 1
    assert c.amount_yuan == 0.0 and c.repeat_visits == 0
    assert c.public_opinion == "NONE" and c.procedure == "NONE"
    assert c.intent == "UNSPECIFIED" and c.received_tier == "UNSPECIFIED"
    assert c.received_at.utcoffset() == timedelta(hours=8)


def test_complaint_hint_alone_is_enough() -> None:
    assert complaint_from_dict({"id": "c1", "category_hint": "neighbor"}).text == ""


def test_complaint_naive_timestamp_is_local_time() -> None:
    c = complaint_from_dict({"id": "c1", "text": "x", "received_at": "2026-03-01T09:00:00"})
    assert c.received_at.utcoffset() == timedelta(hours=8)
    z = complaint_from_dict({"id": "c1", "text": "x", "received_at": "2026-03-01T01:00:00Z"})
    assert z.received_at.utcoffset() == timedelta(0)


def test_complaint_zero_people_means_unknown_which_counts_as_one() -> None:
    assert complaint_from_dict({"id": "c", "text": "x", "people_involved": 0}).people_involved == 1


def test_complaint_every_bad_field_is_named_at_once() -> None:
    bad = _violations(
        {
            "text": 5,
            "people_involved": -3,
            "repeat_visits": 1.5,
            "amount_yuan": "lots",
            "intent": "COMPLAIN",
            "channel": 7,
            "vulnerable": "yes",
            "received_at": "yesterday",
            "region": {"township_code": 12, "county": "x"},
            "complainant": {"name": 5},
            "peeple_involved": 3,
        }
    )
    assert set(bad) == {
        "id",
        "text",
        "people_involved",
        "repeat_visits",
        "amount_yuan",
        "intent",
        "channel",
        "vulnerable",
        "received_at",
        "region.township_code",
        "region.county",
        "complainant.name",
        "peeple_involved",
    }
    assert "allowed:" in bad["intent"] and "MEDIATION" in bad["intent"]
    assert bad["peeple_involved"] == "unknown field"


def test_complaint_missing_text_and_hint_is_named() -> None:
    assert _violations({"id": "c1", "title": "标题"}) == {"text": "text or category_hint is required"}
    assert set(_violations({"id": "  ", "text": "   "})) == {"id", "text"}


def test_complaint_not_an_object_is_refused() -> None:
    assert _violations([1, 2]) == {"": "a complaint must be a JSON object, not list"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e16])
def test_complaint_amount_must_be_finite_and_bounded(value: float) -> None:
    assert "amount_yuan" in _violations({"id": "c", "text": "x", "amount_yuan": value})


def test_complaint_oversize_and_broken_strings_are_refused() -> None:
    bad = _violations({"id": "c", "text": "字" * 20_001, "title": "a\x00b", "category_hint": "\ud800"})
    assert set(bad) == {"text", "title", "category_hint"}
    assert "20000" in bad["text"]


def test_complaint_errors_never_echo_values_or_personal_data() -> None:
    secret = "张三丰-110101199003077777-13800138000"
    with pytest.raises(ComplaintError) as exc:
        complaint_from_dict(
            {
                "id": secret,
                "text": secret * 2000,
                "intent": secret,
                "complainant": {"name": secret, "phone": 5},
                secret: 1,
            }
        )
    message = str(exc.value)
    assert "张三丰" not in message and "110101" not in message and "138001" not in message
    assert {"text", "intent", "complainant.phone"} <= {v.field for v in exc.value.violations}


def test_complainant_repr_hides_personal_data() -> None:
    c = complaint_from_dict({"id": "c", "text": "x", "complainant": {"name": "李四", "phone": "13900000000"}})
    assert "李四" not in repr(c) and "13900000000" not in repr(c)


@pytest.mark.parametrize(
    "received_at",
    [
        "9999-12-17T00:00:00Z",  # resolve_by (15 days) used to overflow the date: INTERNAL
        "9999-12-31T23:59:59Z",
        "9999-10-01T00:00:00Z",
        "9999-09-30T23:59:59-01:00",  # in UTC already October
        "0001-01-01T00:00:00Z",
        "0001-01-01T12:00:00+08:00",
        "0001-01-01T23:59:59",  # banner local time: 15:59 UTC the day before... of year 1
    ],
)
def test_complaint_received_at_whose_deadlines_cannot_be_expressed_names_it(received_at: str) -> None:
    assert set(_violations({"id": "c", "text": "x", "received_at": received_at})) == {"received_at"}


@pytest.mark.parametrize(
    "received_at", ["9999-09-30T23:59:59.999999Z", "9999-09-30T23:59:59+08:00", "0001-01-02T00:00:00Z"]
)
def test_complaint_received_at_at_the_edges_yields_every_deadline(received_at: str) -> None:
    from conftest import WUSHEN
    from fenliu import Decider, load_pack
    from fenliu.domain.model import LATEST_RECEIVED_AT

    decider = Decider(load_pack(WUSHEN))
    for extra in ({"people_involved": 40}, {"people_involved": 4}, {"category_hint": "legal_aid"}):
        c = complaint_from_dict({"id": "c", "text": "拖欠工资", "received_at": received_at, **extra})
        d = decider.decide(c)
        assert d.deadlines and all(when > c.received_at for when in d.deadlines.values())
        # and a later extension of 30 days past the statutory 60 still fits
        assert (c.received_at + timedelta(days=90, hours=24)).year <= 9999
        assert c.received_at <= LATEST_RECEIVED_AT
        d.to_dict()
