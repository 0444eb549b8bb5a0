"""The pack loader passes a valid file through fastjsonschema and reads an invalid one with jsonschema
(for its errors' paths): the two must give the same verdict, or an invalid file could pass unread. Held
on every YAML file under rules/ and on random mutations of them, against every schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fenliu.packs import load
from fenliu.packs._yaml import YamlProblem, load_yaml
from fenliu.packs.load import schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ("manifest", "rules", "cases", "lexicon")


def _docs() -> list[tuple[str, Any]]:
    out = []
    for path in sorted((ROOT / "rules").rglob("*.yaml")):
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"))
        except (YamlProblem, UnicodeDecodeError):
            continue  # the broken-YAML examples: never reach the schema
        out.append((str(path.relative_to(ROOT)), doc))
    return out


DOCS = _docs()
FAST = {n: load._fast_check(n) for n in SCHEMAS}  # what the loader runs
SLOW = {n: jsonschema.Draft202012Validator(schema(n)) for n in SCHEMAS}


def _fast_ok(name: str, doc: Any) -> bool:
    try:
        FAST[name](doc)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _agree(doc: Any, rel: str) -> None:
    for name in SCHEMAS:
        assert _fast_ok(name, doc) == SLOW[name].is_valid(doc), (rel, name)


def test_every_file_of_the_packs_gets_one_verdict_from_both() -> None:
    assert len(DOCS) > 40
    valid = 0
    for rel, doc in DOCS:
        _agree(doc, rel)
        valid += any(SLOW[n].is_valid(doc) for n in SCHEMAS)
    assert valid > 30  # most files are valid under their own schema: both paths are exercised


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 20),
    st.floats(-1, 12, allow_nan=False),
    st.sampled_from(["", "x", "wage_arrears", "RED", "2026-01-01", "a b", "欠薪", "ne", "copy"]),
    st.lists(st.sampled_from(["x", "欠薪", "RED"]), max_size=3),
    st.dictionaries(
        st.sampled_from(["term", "weight", "id", "when", "then", "ne", "zzz"]), st.integers(0, 9), max_size=2
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 10_000),
    where=st.integers(0, 100_000),
    how=st.sampled_from(["replace", "delete", "add"]),
    value=VALUES,
)
def test_a_mutated_file_gets_one_verdict_from_both(which: int, where: int, how: str, value: Any) -> None:
    rel, doc = DOCS[which % len(DOCS)]
    doc = copy.deepcopy(doc)  # as the loader reads it (line-keeping mappings and lists)
    paths = _paths(doc)
    path = paths[where % len(paths)]
    if not path:
        doc = value if how == "replace" else doc
    else:
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        if how == "replace":
            parent[last] = value
        elif how == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent["zz_unknown"] = value
        else:
            parent.insert(last, value)
    _agree(doc, f"{rel} ({how} at {path})")
