"""The field table agrees with everything that names fields: Outcome, to_dict, the proto, diff."""

from __future__ import annotations

import dataclasses

import pytest

from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.authoring import diff
from fenliu.domain import fields as F
from fenliu.domain import model
from fenliu.engine import resolution
from fenliu.serving import convert

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
    assert set(model.DECIDED_FIELDS) | envelope | {"suggestions", "matter", "owning_point"} == PROTO_DECISION


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


# ----------------------------------------------------------------------------------------------------
# Complaint fields: the table, the proto's Complaint (read from the generated descriptor), model.Complaint


def _proto_paths() -> set[str]:
    out: set[str] = set()
    for fd in pb.Complaint.DESCRIPTOR.fields:
        sub = fd.message_type
        if sub is not None and sub.full_name != "google.protobuf.Timestamp":
            out |= {f"{fd.name}.{g.name}" for g in sub.fields}
        else:
            out.add(fd.name)
    return out


COMPLAINT_DATACLASS = {f.name: f for f in dataclasses.fields(model.Complaint)}


def test_field_table_complaint_names_are_unique_and_named_in_chinese() -> None:
    names = [f.name for f in F.COMPLAINT_TABLE]
    assert len(names) == len(set(names))
    assert all(f.zh for f in F.COMPLAINT_TABLE)
    assert list(F.COMPLAINT_FIELDS) == [f.name for f in F.COMPLAINT_TABLE if f.testable]


def test_field_table_complaint_table_covers_the_proto_complaint_exactly() -> None:
    sent = {f.proto for f in F.COMPLAINT_TABLE if not f.derived}
    assert sent == _proto_paths()
    assert all(f.proto == "" for f in F.COMPLAINT_TABLE if f.derived)


@pytest.mark.parametrize("field", F.COMPLAINT_TABLE, ids=lambda f: f.name)
def test_field_table_each_complaint_field_matches_the_proto_and_the_model(field: F.ComplaintField) -> None:
    top, _, inner = field.name.partition(".")
    assert top in COMPLAINT_DATACLASS, field.name
    if not field.derived:
        fd = pb.Complaint.DESCRIPTOR.fields_by_name[field.top]
        if inner:
            fd = fd.message_type.fields_by_name[inner]
        kind = field.type.kind
        expected = {
            "enum": fd.TYPE_ENUM,
            "bool": fd.TYPE_BOOL,
            "int": fd.TYPE_INT64,
            "number": fd.TYPE_DOUBLE,
            "text": fd.TYPE_STRING,
            "code": fd.TYPE_STRING,
            "time": fd.TYPE_MESSAGE,
        }[kind]
        assert fd.type == expected, field.name
        if kind == "enum":
            names = {convert.enum_name(fd.enum_type, v.number) for v in fd.enum_type.values if v.number}
            assert names == set(field.type.values) - {model.UNSPECIFIED}
    if inner:
        holder = {
            "region": model.REGION_FIELDS,
            "complainant": model.COMPLAINANT_FIELDS,
            "receiving_point": model.RECEIVING_POINT_FIELDS,
        }[top]
        assert inner in holder
        assert field.personal == (top == "complainant")
    else:
        default = COMPLAINT_DATACLASS[top].default
        if field.name not in ("id", "received_at"):  # required, or the time of receipt
            assert default == field.default, field.name
    assert (field.name in model.DERIVED_FIELDS) == field.derived


def test_field_table_complaint_json_form_and_limits_agree_with_the_model() -> None:
    kinds = {"text": "str", "code": "str", "enum": "enum", "bool": "bool", "int": "int", "number": "float"}
    top_level = [f for f in F.COMPLAINT_TABLE if not f.derived and "." not in f.name]
    for f in top_level:
        if f.name != "received_at":
            assert model._KINDS[f.name] == kinds[f.type.kind], f.name
    assert set(model._KINDS) == {f.name for f in top_level} | {"region", "complainant", "receiving_point"}
    assert {f.name: f.limit for f in top_level if f.limit} == model._STRING_LIMITS
    assert set(model.COMPLAINT_ENUMS) == set(F.complaint_fields(kind="enum"))
    assert F.complaint_fields(kind="bool") == model.COMPLAINT_BOOLS
    assert set(model.COMPLAINT_ENUMS) == set(convert.COMPLAINT_ENUM_TYPES)
    for name, default in model.ENUM_DEFAULTS.items():
        assert F.COMPLAINT_BY_NAME[name].default == default
    assert convert.REGION_FIELDS == model.REGION_FIELDS
    assert convert.COMPLAINANT_FIELDS == model.COMPLAINANT_FIELDS
    assert F.complaint_fields(derived=True) == model.DERIVED_FIELDS
    assert F.complaint_fields(kind="bool", derived=True) == model.DERIVED_BOOLS
