"""What makes memoized decisions sound, stated in code, and the bounds of every memory.

A :class:`~fenliu.engine.decider.Decider` remembers what each stage does per *class* of its input (see
docs/engine.md, "Memoization"). That is sound only when what a rule matches and sets depends on the
class alone, which holds for exactly these constructs, and :func:`refusals` refuses any other at pack
load (a :class:`~fenliu.domain.errors.Problem` with code ``memo-unsound``), whatever the backend:

* a test compares one field with **constants** (``eq ne lt lte gt gte between in not_in``): the class
  of a number is where it falls among the pack's thresholds, of a text which constant it equals;
* the field is a complaint field (:data:`fenliu.domain.fields.COMPLAINT_FIELDS`, derived ones included: an
  enricher computes them *before* the engine, so they enter the class key), a decision field, or a
  column of a table keyed by a decision field;
* keyword groups and patterns count as booleans;
* ``then`` sets a literal, copies a decision field or a complaint field, or looks a row up by a
  decision field: what it reads enters the step's memory key by value.

Nothing stateful is read inside the engine: a matter's history or a text score enters as a complaint
field computed by an enricher (:mod:`fenliu.engine.enrich`).

The bounds below are every memory a Decider keeps; each starts afresh when it reaches its bound.
(Outside the Decider, :func:`fenliu.domain.model.deadlines_for` keeps at most 4,096 distinct durations.)
"""

from __future__ import annotations

from typing import Any, Final

from fenliu.domain import fields as F
from fenliu.domain.errors import Problem
from fenliu.packs.types import OPERATORS, Pack, Test, iter_tests

#: Default bound of the decision graph (nodes and edges); the others derive from it or are fixed.
GRAPH_NODES: Final = 80_000
#: The outcomes memory: a quarter of the graph's bound.
OUTCOMES_SHARE: Final = 4
#: The step memory (outlives a graph that starts afresh): a third of the graph's bound.
STEPS_SHARE: Final = 3
#: The matching, parts, transition and resolution memories, and trace entries: fixed.
STAGE_MEMORY: Final = 16_384

_CONSTANT_TYPES: Final = (str, int, float, bool, type(None))


def _constant(v: Any) -> bool:
    if isinstance(v, tuple):
        return all(isinstance(x, _CONSTANT_TYPES) for x in v)
    return isinstance(v, _CONSTANT_TYPES)


def _known_field(name: str, pack: Pack) -> bool:
    if name in F.COMPLAINT_FIELDS or name in F.DECISION_FIELDS or name in pack.defaults:
        return True
    table, _, column = name.partition(".")
    return bool(column) and table in pack.tables


def refusals(pack: Pack) -> list[Problem]:
    """The constructs of ``pack`` outside the class abstraction, each as a problem naming rule and line."""
    out: list[Problem] = []
    for r in pack.rules:
        for leaf in iter_tests(r.when):
            if not isinstance(leaf, Test):
                continue
            if leaf.op not in OPERATORS:
                why = f"operator '{leaf.op}' is not one the memo's classes support ({', '.join(OPERATORS)})"
            elif not _constant(leaf.value):
                why = f"'{leaf.field}' is compared with something other than constants"
            elif not _known_field(leaf.field, pack):
                why = f"'{leaf.field}' is no complaint, decision or table field, so it has no class"
            else:
                continue
            out.append(Problem(r.file, leaf.line or r.line, r.id, "memo-unsound", why))
        for slot, v in r.then.items():
            if v.kind not in ("literal", "copy", "lookup"):
                why = f"then {slot}: '{v.kind}' is not a value the memo's step key can hold"
            elif v.kind == "copy" and not _known_field(v.source, pack):
                why = f"then {slot}: copies '{v.source}', which is no complaint, decision or table field"
            else:
                continue
            out.append(Problem(r.file, v.line or r.line, r.id, "memo-unsound", why))
    return out
