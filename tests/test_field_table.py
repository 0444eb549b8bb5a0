"""The field table agrees with everything that names fields: Outcome, to_dict, the proto, diff."""

from __future__ import annotations

import dataclasses

import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.authoring import diff
from fenliu.domain import fields as F
from fenliu.domain import model
from fenliu.engine import resolution

PROTO_DECISION = {f.name for f in pb.Decision.DESCRIPTOR.fields}
PROTO_COMPLAINT = {f.name for f in pb.Complaint.DESCRIPTOR.fields}
PROTO_REGION = {f.name for f in pb.Region.DESCRIPTOR.fields}
PROTO_DEADLINES = {f.name for f in pb.Deadlines.DESCRIPTOR.fields}
OUTCOME = {f.name for f in dataclasses.fields(model.Outcome)}


def test_field_table_names_are_unique_and_match_the_derived_maps() -> None:
    names = [f.name for f in F.DECISION_TABLE]
    assert len(names) == len(set(names))
    assert list(F.DECISION_FIELDS) == names
    assert list(F.RESOLUTION) == names
    assert list(F.BUILTIN_DEFAULTS) == names
    assert all(f.zh for f in F.DECISION_TABLE)


@pytest.mark.parametrize("field", F.DECISION_TABLE, ids=lambda f: f.name)
def test_field_table_each_decision_field_reaches_the_proto_and_outcome(field: F.DecisionField) -> None:
    if field.name in F.DEADLINE_SLOTS:
        assert field.proto == ""
        assert F.DEADLINE_SLOTS[field.name] in PROTO_DEADLINES
    else:
        assert field.proto in PROTO_DECISION
        assert field.name in OUTCOME


def test_field_table_deadlines_match_the_proto_and_model() -> None:
    assert set(F.DEADLINE_SLOTS.values()) == PROTO_DEADLINES == set(model.DEADLINE_NAMES)


def test_field_table_decided_fields_are_proto_decision_fields_and_in_outcome() -> None:
    assert set(model.DECIDED_FIELDS) <= PROTO_DECISION
    assert set(model.DECIDED_FIELDS) - {"deadlines"} <= OUTCOME
    table = {f.proto for f in F.DECISION_TABLE if f.proto}
    # Every proto field a pack decides is a table field, "path" (the stages ahead) and the deadlines.
    assert set(model.DECIDED_FIELDS) == table | {"path", "deadlines"}


def test_field_table_proto_decision_has_nothing_undeclared() -> None:
    envelope = {"complaint_id", "decision_id", "existing_case_id", "guidance", "rule_pack", "trace", "notes"}
    assert set(model.DECIDED_FIELDS) | envelope | {"suggestions"} == PROTO_DECISION


def test_field_table_complaint_fields_are_proto_complaint_fields() -> None:
    for name in F.COMPLAINT_FIELDS:
        if name in model.DERIVED_FIELDS:
            assert name not in PROTO_COMPLAINT  # derived before the engine, never sent
        elif name.startswith("region."):
            assert name.removeprefix("region.") in PROTO_REGION
        else:
            assert name in PROTO_COMPLAINT, name


def test_field_table_diff_columns_follow_the_table() -> None:
    assert (*model.DECIDED_FIELDS, "suggestions") == diff.FIELDS


def test_field_table_highest_fields_have_an_order() -> None:
    for f in F.DECISION_TABLE:
        assert resolution.by_highest(f.name) == (f.resolve == "highest")
    assert resolution.replaces("color", "RED", "BLUE")
    assert not resolution.replaces("color", "BLUE", "RED")
    assert not resolution.replaces("category", "b", "a")
    assert resolution.rank("color", "PURPLE") == -1
