"""The JSON Schema of test files (``*_test.yaml``), derived from the field tables.

A case's ``complaint`` is the complaint's JSON form (what :func:`fenliu.domain.model.complaint_from_dict`
reads, plus the fields the enrichers derive, which a case may give); its ``expect`` is a part of the
decision's JSON form (:meth:`fenliu.domain.model.Decision.to_dict`): the decision fields of
:data:`fenliu.domain.fields.DECISION_TABLE`, the deadlines and what a decision says besides. The file
``service/fenliu/schema/cases.schema.json`` is this schema written out (``python -m
fenliu.packs.case_schema > service/fenliu/schema/cases.schema.json``); a test checks they agree, so a
field added to a table reaches editors and ``fenliu check`` alike. Codes of a pack's tables (categories,
departments) are not in the schema; the loader checks them against the pack.
"""

from __future__ import annotations

import json
from typing import Any

from fenliu.domain import fields as F
from fenliu.domain import model

Schema = dict[str, Any]


def _nullable(s: Schema) -> Schema:
    if "enum" in s:
        return {**s, "enum": [*s["enum"], None]}
    kind = s["type"]
    return {**s, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _of_type(t: F.FieldType, limit: int = 0) -> Schema:
    if t.kind == "enum":
        return {"enum": list(t.values)}
    if t.kind == "codes":
        return {"type": "array", "items": {"type": "string"}}
    if t.kind in ("text", "code"):
        return {"type": "string", "maxLength": limit} if limit else {"type": "string"}
    by_kind: dict[str, Schema] = {
        "int": {"type": "integer", "minimum": 0},
        "number": {"type": "number", "minimum": 0},
        "bool": {"type": "boolean"},
        "time": {"type": "string", "description": "ISO 8601, e.g. 2026-12-04T09:30:00+08:00"},
    }
    return by_kind[t.kind]


def _object(properties: dict[str, Schema], **more: Any) -> Schema:
    return {"type": "object", "additionalProperties": False, "properties": properties, **more}


def complaint_schema() -> Schema:
    """The complaint's JSON form, from :data:`~fenliu.domain.fields.COMPLAINT_TABLE`: every field sent
    (``region.village_code`` inside ``region``) and every derived one; ``null`` is an absent field, and
    an enumeration also takes ``UNSPECIFIED`` or ``""`` (absent), as ``complaint_from_dict`` reads it."""
    top: dict[str, Schema] = {}
    inner: dict[str, dict[str, Schema]] = {}
    for f in F.COMPLAINT_TABLE:
        s = _of_type(f.type, f.limit)
        if f.type.kind == "enum" and not f.derived:
            s = {"enum": [*dict.fromkeys([*f.type.values, model.UNSPECIFIED, ""])]}
        path = f.proto or f.name
        if "." in path:
            outer, name = path.split(".", 1)
            inner.setdefault(outer, {})[name] = _nullable(s)
            top.setdefault(outer, {})
        else:
            top[path] = s
    for outer, props in inner.items():
        top[outer] = _object(props)
    return _object({k: _nullable(v) for k, v in top.items()})


def expect_schema() -> Schema:
    """A part of the decision's JSON form: what a case may expect."""
    props: dict[str, Schema] = {}
    for f in F.DECISION_TABLE:
        if f.type.kind == "duration":
            continue  # reaches the decision as a deadline (below)
        s = _of_type(f.type)
        props[f.name] = s if f.type.kind in ("bool", "codes") else _nullable(s)
    props["deadlines"] = _object({name: _nullable({"type": "string"}) for name in F.DEADLINE_SLOTS.values()})
    props["path"] = {"type": "array", "items": {"enum": list(model.STAGES)}}
    props["guidance"] = {"type": "string"}
    props["existing_case_id"] = _nullable({"type": "string"})
    props["complaint_id"] = {"type": "string"}
    props["suggestions"] = {"type": "array"}
    props["rule_pack"] = {"type": "object"}
    return _object(props, minProperties=1)


def cases_schema() -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fenliu.example/schema/cases.schema.json",
        "title": "fenliu rule pack test cases (*_test.yaml)",
        "description": "Generated from fenliu.domain.fields and fenliu.domain.model by fenliu.packs.case_schema.",
        "type": "object",
        "required": ["cases"],
        "additionalProperties": False,
        "properties": {
            "cases": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "complaint", "expect"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "complaint": complaint_schema(),
                        "expect": expect_schema(),
                        "fired": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Rule ids that must fire.",
                        },
                        "not_fired": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Rule ids that must not fire.",
                        },
                    },
                },
            }
        },
    }


def render() -> str:
    return json.dumps(cases_schema(), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
