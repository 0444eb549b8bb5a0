"""What durable_rules needs of a compiled pack, beside its adapter: the lowering of the neutral
conditions (:mod:`fenliu.packs.types`: ``Test Keywords Pattern Not All AnyOf``) to the engine's
expression dialect, and the engine's limits, checked at pack load.

* **Expressions.** Conditions become engine expressions using only ``$and $or $neq $lt $lte $gt $gte``
  and equality; ``not`` is pushed down to the leaves. Every expression also tests the step field, so a
  stage's fact matches only that stage's rules. The lowered set is checked again for engine traps
  (:func:`check_expression`).
* **Limits.** The engine hangs creating a ruleset with more than 512 distinct tests under one node,
  and refuses facts with more than 253 properties: :func:`check` reports a stage past
  :data:`MAX_TESTS_PER_FIELD` or :data:`MAX_FACT_FIELDS` as a :class:`~fenliu.domain.errors.Problem`
  naming file, line and rule.

It does not import durable_rules (:mod:`fenliu.engine._durable` does, and imports this), so pack loading
reaches these checks through :data:`fenliu.engine.matchers.BACKENDS` without loading the engine.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from fenliu.compiling.compiler import CompiledPack, StagePlan, fact_name
from fenliu.domain.errors import Problem
from fenliu.packs.types import All, AnyOf, Cond, Keywords, Not, Pattern, Test, iter_tests

#: The field of every fact that names its stage; every rule's expression tests it.
STEP_FIELD: Final = "_step"
#: Stay well inside the engine's 512 distinct tests under one node ...
MAX_TESTS_PER_FIELD: Final = 500
#: ... and its 253 properties per fact.
MAX_FACT_FIELDS: Final = 240

#: The operators an expression may use (and equality, written ``{field: value}``).
OPERATORS: Final = frozenset({"$and", "$or", "$neq", "$lt", "$lte", "$gt", "$gte"})

Scalar: TypeAlias = str | int | float | bool | None
#: An engine expression: ``{field: value}``, ``{"$op": {field: value}}``, ``{"$and"|"$or": [...]}``.
Expression: TypeAlias = dict[str, "Operand"]
Operand: TypeAlias = "Scalar | tuple[Scalar, ...] | Expression | list[Expression]"

_NEGATE: Final = {
    "eq": "ne",
    "ne": "eq",
    "lt": "gte",
    "gte": "lt",
    "lte": "gt",
    "gt": "lte",
    "in": "not_in",
    "not_in": "in",
}
_ENGINE_OP: Final = {"ne": "$neq", "lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}


def _leaf(t: Test) -> Expression:
    name = fact_name(t.field)
    if t.op == "eq":
        return {name: t.value}
    if t.op == "in":
        alts: list[Expression] = [{name: v} for v in t.value]
        return alts[0] if len(alts) == 1 else {"$or": alts}
    if t.op == "not_in":
        alts = [{"$neq": {name: v}} for v in t.value]
        return alts[0] if len(alts) == 1 else {"$and": alts}
    return {_ENGINE_OP[t.op]: {name: t.value}}


def to_expression(c: Cond, cp: CompiledPack, negate: bool = False) -> Expression | None:
    """An engine expression for ``c`` (or its negation). ``None`` means always true."""
    if isinstance(c, Test):
        return _leaf(Test(c.field, _NEGATE[c.op], c.value, c.line) if negate else c)
    if isinstance(c, Keywords):
        return {cp.keyword_of[c.words]: not negate}
    if isinstance(c, Pattern):
        return {cp.pattern_index[c.regex]: not negate}
    if isinstance(c, Not):
        return to_expression(c.item, cp, not negate)
    if isinstance(c, All | AnyOf):
        if not c.items:
            if negate:  # not(always) — never true: an impossible equality on the step field
                return {STEP_FIELD: "\x00never"}
            return None
        parts = [to_expression(x, cp, negate) for x in c.items]
        conj = isinstance(c, All) != negate
        if conj:
            kept = [p for p in parts if p is not None]
            if not kept:
                return None
            return kept[0] if len(kept) == 1 else {"$and": kept}
        if any(p is None for p in parts):
            return None
        kept = [p for p in parts if p is not None]
        return kept[0] if len(kept) == 1 else {"$or": kept}
    raise TypeError(type(c).__name__)


def stage_expressions(plan: StagePlan, cp: CompiledPack) -> dict[str, Expression]:
    """The engine rules of one stage: ``r<position in the stage>`` → its expression."""
    out: dict[str, Expression] = {}
    for n, r in enumerate(plan.rules):
        body = to_expression(r.when, cp)
        out[f"r{n}"] = {"$and": [{STEP_FIELD: plan.name}, body]} if body else {STEP_FIELD: plan.name}
    return out


def check_expression(expr: Operand) -> list[str]:
    """Engine traps in a lowered expression: operators outside the safe set, regex, existence tests."""
    problems: list[str] = []
    if isinstance(expr, dict):
        for k, v in expr.items():
            if k.startswith("$"):
                if k not in OPERATORS:
                    problems.append(f"operator {k} is not allowed")
                if k in ("$and", "$or"):
                    if not isinstance(v, list) or not v:
                        problems.append(f"{k} needs a non-empty list")
                    else:
                        for x in v:
                            problems += check_expression(x)
                elif isinstance(v, dict):
                    for field, value in v.items():
                        if isinstance(value, dict | list):
                            problems.append(f"{k} on {field} compares with a structure")
            elif isinstance(v, dict | list):
                problems.append(f"field {k} compared with a structure")
    else:
        problems.append("an expression must be a mapping")
    return problems


def check(cp: CompiledPack) -> list[Problem]:
    """What of ``cp`` the engine cannot run: traps in the lowered expressions, too many distinct tests
    on one field of a stage, too many properties in a stage's fact. Each names file, line and rule."""
    problems: list[Problem] = []
    for plan in cp.stages:
        rules, stage = plan.rules, plan.name
        tests_per_field: dict[str, set[tuple[str, object]]] = {}
        for r in rules:
            for leaf in iter_tests(r.when):
                if isinstance(leaf, Test):
                    vals = leaf.value if leaf.op in ("in", "not_in") else (leaf.value,)
                    tests_per_field.setdefault(leaf.field, set()).update((leaf.op, v) for v in vals)
        for r, expr in zip(rules, stage_expressions(plan, cp).values(), strict=True):
            for why in check_expression(expr):
                problems.append(Problem(r.file, r.line, r.id, "engine-trap", why))
        for fname, tests in tests_per_field.items():
            if len(tests) > MAX_TESTS_PER_FIELD:
                first = next(
                    r
                    for r in rules
                    if any(isinstance(x, Test) and x.field == fname for x in iter_tests(r.when))
                )
                problems.append(
                    Problem(
                        first.file,
                        first.line,
                        first.id,
                        "engine-too-many-tests",
                        f"stage {stage}: {len(tests)} distinct tests on '{fname}'; the engine hangs past 512 (limit {MAX_TESTS_PER_FIELD})",
                    )
                )
        properties = len(plan.fields) + len(plan.features)
        if properties > MAX_FACT_FIELDS:
            first_rule = rules[0]
            problems.append(
                Problem(
                    first_rule.file,
                    first_rule.line,
                    first_rule.id,
                    "engine-too-many-properties",
                    f"stage {stage} tests {properties} fields and keyword groups; the engine refuses facts past 253 (limit {MAX_FACT_FIELDS})",
                )
            )
    return problems


def required_false(expr: Operand, name: str) -> bool:
    """Whether a lowered expression anywhere tests ``name`` equal to false (the compiler's
    :attr:`~fenliu.compiling.compiler.StagePlan.negated` must agree: ``tests/test_engine_adapter.py``)."""
    if isinstance(expr, dict):
        return any((k == name and v is False) or required_false(v, name) for k, v in expr.items())
    if isinstance(expr, list):
        return any(required_false(x, name) for x in expr)
    return False
