"""Authoring lint for rule packs: conflicts, dead rules, gaps. See docs/authoring-rules.md.

The loader (:mod:`fenliu.packs.load`) refuses packs that cannot work at all. This lint finds packs that work
but do not say what their authors meant:

=====================  ========  =====================================================================
code                   severity  meaning
=====================  ========  =====================================================================
conflict               error     two rules of one stage, same priority, both match some complaint (an
                                 example is found and checked) and set a field to different values
possible-conflict      warning   as ``conflict``, but no example complaint could be confirmed, or the
                                 values come from a copy or lookup and may differ
dead-contradiction     error     the rule's conditions can never hold together (or test a value that
                                 no earlier stage can produce)
dead-shadowed          error     whenever the rule matches, higher-priority rules set every field it sets
shadowed-field         warning   one field of the rule never takes effect (others do)
category-unreachable   warning   a row of table ``categories`` that no rule, hint or default can give
stage-unreachable      warning   a funnel stage no decision can be in
keyword-shared         warning   one keyword in the rules of two different categories
keyword-short          warning   a one-character keyword (it matches inside unrelated words)
keyword-common         warning   a keyword too common to tell complaints apart (的, 问题, 反映 …)
keyword-too-common     warning   with a corpus: a keyword more than 20% of its complaints hold
threshold-gap          warning   rules of one stage setting one field by bands of one number leave a
                                 value between the bands uncovered
lookup-no-row          warning   a lookup's key can take a value the table has no row for
unused-explanation     warning   an ``explained_warnings`` entry of the manifest matches no warning
lint-failed            warning   a check of the lint itself failed (a bug to report); never blocks a pack
=====================  ========  =====================================================================

How it reasons. Every condition is put in disjunctive normal form over *boxes*: a box constrains each
variable to a set: an interval set for a number, a value set for an enum, a code or a boolean, "in S"
or "not in S" for free text, present/absent for each keyword, true/false for each pattern. Tests on
decision fields range over the values earlier stages can actually give them (defaults, literals, copies
and looked-up columns of rules that can take effect); tests on table columns (``categories.arbitrable``)
become tests on the table's key. This over-approximates what complaints can do, so "no box survives" is
a proof: ``dead-*`` errors are sound. A ``conflict`` is an error only once a concrete complaint on which
both rules match has been built from the overlap and checked with the plain interpreter.

An :data:`explained <EXPLAINED>` warning (listed in the manifest's ``explained_warnings`` with its
code, rule and reason) is reported with severity ``explained`` and not counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from fenliu.authoring.space import (
    _COMPLAINT_DOMAINS,
    INF,
    Atom,
    Box,
    Con,
    Fin,
    Num,
    Space,
    TooComplex,
    Txt,
    _describe,
    _domain_of_type,
    _fmt,
    _fvar,
    _num_meet,
    num,
)
from fenliu.compiling.compiler import CompiledPack, normalize_text
from fenliu.domain import fields as F
from fenliu.domain import model
from fenliu.domain.errors import Problem
from fenliu.domain.model import DERIVED_FIELDS
from fenliu.engine import resolution
from fenliu.i18n import _
from fenliu.packs._yaml import YamlProblem, YDict, YList, load_yaml
from fenliu.packs.types import (
    All,
    AnyOf,
    Cond,
    Keywords,
    LexiconEntry,
    Not,
    Pack,
    Pattern,
    Rule,
    Test,
    Value,
    iter_tests,
)

if TYPE_CHECKING:
    from fenliu.engine.decider import Decider

ERROR: Final = "error"
WARNING: Final = "warning"
EXPLAINED: Final = "explained"

#: Example complaints tried to confirm one conflict.
MAX_WITNESSES: Final = 24

# ---------------------------------------------------------------------------------------------------
# What decision fields can hold, stage by stage


_SKIPPED: Final = (None, "", model.UNSPECIFIED)


def _testable(name: str) -> bool:
    return F.DECISION_FIELDS[name].kind not in ("codes", "duration")


def _default(pack: Pack, name: str) -> Atom:
    """The default of a testable field: one value ("" for none)."""
    v = pack.defaults.get(name)
    if v is None:
        return ""
    assert isinstance(v, str | int | float | bool), name
    return v


class Analysis:
    """Reachable decision values per stage, given rule-fields that never take effect."""

    def __init__(self, pack: Pack, compiled: CompiledPack, inert: set[tuple[str, str]]) -> None:
        self.pack = pack
        self.words = compiled.words
        self.inert = inert  # (rule id, field) pairs that never take effect
        self.spaces: dict[str, Space] = {}
        values: dict[str, set[Atom] | None] = {
            n: {_default(pack, n)} for n in F.DECISION_FIELDS if _testable(n)
        }
        for stage in pack.stages:
            space = Space(pack, self._domains(values), self.words)
            self.spaces[stage] = space
            adds: dict[str, set[Atom] | None] = {}
            for r in pack.rules:
                if r.stage != stage:
                    continue
                for slot, v in r.then.items():
                    if slot not in values or (r.id, slot) in self.inert:
                        continue
                    got = self._values(v, space)
                    if got is None:
                        adds[slot] = None
                    elif slot not in adds or adds[slot] is not None:
                        cur = adds.setdefault(slot, set())
                        assert cur is not None
                        cur.update(got)
            for slot, got in adds.items():
                have = values[slot]
                values[slot] = None if got is None or have is None else have | got
        self.final = Space(pack, self._domains(values), self.words)

    def _domains(self, values: dict[str, set[Atom] | None]) -> dict[str, Con]:
        out: dict[str, Con] = {}
        for name, vals in values.items():
            ftype = F.DECISION_FIELDS[name]
            if vals is None:
                out[name] = _domain_of_type(ftype, self.pack)
            elif ftype.numeric:
                nums = [v for v in vals if isinstance(v, int | float)]
                out[name] = num([(v, True, v, True) for v in nums], ftype.kind == "int")
            else:
                out[name] = Fin(frozenset(vals))
        return out

    def _values(self, v: Value, space: Space) -> set[Atom] | None:
        """Values ``v`` can give; None means any value of the field's type."""
        if v.kind == "literal":
            return {"" if v.literal is None else v.literal}
        if v.kind == "copy":
            dom = space.domain(_fvar(v.source))
            if isinstance(dom, Fin):
                return {x for x in dom.values if x not in _SKIPPED}
            return None
        table = self.pack.tables[v.table]
        return {row[v.column] for row in table.rows.values() if row.get(v.column) is not None}


# ---------------------------------------------------------------------------------------------------
# The lint


@dataclass(slots=True)
class _Ctx:
    pack: Pack
    compiled: CompiledPack
    findings: list[Problem]
    decider: Decider | None = None

    def add(self, file: str, line: int, rule: str, code: str, severity: str, message: str) -> None:
        self.findings.append(Problem(file, line, rule, code, message, severity))


def lint(pack: Pack, compiled: CompiledPack, *, corpus: Sequence[str] = ()) -> list[Problem]:
    """Every finding, sorted. Errors block a reload; warnings do not; explained warnings are marked.
    ``corpus``: complaint texts (title and text) on which the lexicon's terms are measured."""
    ctx = _Ctx(pack, compiled, [])
    manifest = f"{pack.root.name}/pack.yaml"
    try:
        analysis = _fixpoint(ctx)
    except Exception as e:  # a lint bug must never stop a pack from loading; say so instead
        ctx.add(
            manifest,
            0,
            "",
            "lint-failed",
            WARNING,
            _("the lint could not analyse this pack ({error})").format(error=type(e).__name__),
        )
        return sorted(ctx.findings)
    checks: list[Callable[[], object]] = [
        lambda: _dead(ctx, analysis, report=True),
        lambda: _conflicts(ctx, analysis),
        lambda: _keywords(ctx),
        lambda: _gaps(ctx),
        lambda: _reach(ctx, analysis),
        lambda: _lookups(ctx, analysis),
        lambda: _vocabulary(ctx, corpus),
        lambda: _rule_keywords(ctx, corpus),
    ]
    for check in checks:
        try:
            check()
        except Exception as e:
            ctx.add(
                manifest,
                0,
                "",
                "lint-failed",
                WARNING,
                _("one of the lint's checks failed on this pack ({error}); its findings are missing").format(
                    error=type(e).__name__
                ),
            )
    return _explain(pack, sorted(set(ctx.findings)))


def _where(r: Rule) -> str:
    return f"{r.file}:{r.line}"


def _has_words(words: frozenset[str]) -> Callable[[Test | Keywords | Pattern], bool]:
    def pred(x: Test | Keywords | Pattern) -> bool:
        return isinstance(x, Keywords) and any(normalize_text(w) in words for w in x.words)

    return pred


def _tests_field(name: str) -> Callable[[Test | Keywords | Pattern], bool]:
    def pred(x: Test | Keywords | Pattern) -> bool:
        return isinstance(x, Test) and x.field == name

    return pred


def _first_line(c: Cond, pred: Callable[[Test | Keywords | Pattern], bool], default: int) -> int:
    for leaf in iter_tests(c):
        if pred(leaf):
            return leaf.line
    return default


# -- dead rules --------------------------------------------------------------------------------------


def _beats(h: Rule, r: Rule, slot: str) -> bool:
    """Whether ``h``'s value for ``slot`` is applied before (wins over) ``r``'s when both match."""
    if resolution.by_highest(slot):
        hv, rv = h.then[slot], r.then[slot]
        if hv.kind != "literal" or rv.kind != "literal":
            return False
        a, b = resolution.rank(slot, hv.literal), resolution.rank(slot, rv.literal)
        return a > b or (a == b and (-h.priority, h.order) < (-r.priority, r.order))
    return (-h.priority, h.order) < (-r.priority, r.order)


def _always_sets(h: Rule, slot: str, pack: Pack, space: Space) -> bool:
    v = h.then[slot]
    if v.kind == "literal":
        return True
    if v.kind == "copy":
        dom = space.domain(_fvar(v.source))
        return isinstance(dom, Fin) and not any(x in _SKIPPED for x in dom.values)
    table = pack.tables[v.table]
    key_dom = space.domain(_fvar(table.key))
    if not isinstance(key_dom, Fin) or any(str(k) not in table.rows for k in key_dom.values):
        return False
    if F.DECISION_FIELDS[slot].kind == "codes":
        return True
    return all(table.rows[str(k)].get(v.column) is not None for k in key_dom.values)


def _covered(space: Space, boxes: list[Box], covers: list[Rule]) -> bool:
    """True when every box is inside the union of the ``covers`` rules' conditions."""
    for h in covers:
        boxes = space.conj(boxes, space.dnf(h.when, negate=True))
        if not boxes:
            return True
    return not boxes


@dataclass(slots=True)
class _Dead:
    contradiction: dict[str, str]  # rule -> why
    shadowed: dict[str, list[str]]  # rule -> rules that take every field first
    fields: dict[tuple[str, str], list[str]]  # (rule, field) -> rules that take it first


def _fixpoint(ctx: _Ctx) -> Analysis:
    inert: set[tuple[str, str]] = set()
    while True:
        analysis = Analysis(ctx.pack, ctx.compiled, inert)
        dead = _dead(ctx, analysis, report=False)
        new = set(dead.fields)
        for rid in (*dead.contradiction, *dead.shadowed):
            new.update((rid, slot) for slot in ctx.pack.rule(rid).then)
        if new <= inert:
            return analysis
        inert |= new


def _dead(ctx: _Ctx, analysis: Analysis, *, report: bool) -> _Dead:
    pack = ctx.pack
    out = _Dead({}, {}, {})
    for r in pack.rules:
        space = analysis.spaces[r.stage]
        try:
            boxes = space.dnf(r.when)
        except TooComplex:
            continue
        if not boxes:
            out.contradiction[r.id] = _why_contradiction(r, pack, space, ctx.compiled)
            continue
        if not r.then:
            continue
        rivals = [
            h for h in pack.rules if h.stage == r.stage and h.id != r.id and h.id not in out.contradiction
        ]
        lost: dict[str, list[str]] = {}
        for slot in r.then:
            covers = [
                h
                for h in rivals
                if slot in h.then and _beats(h, r, slot) and _always_sets(h, slot, pack, space)
            ]
            if not covers:
                continue
            try:
                if _covered(space, boxes, covers):
                    lost[slot] = [h.id for h in _minimal_cover(space, boxes, covers)]
            except TooComplex:
                continue
        if lost and set(lost) == set(r.then):
            out.shadowed[r.id] = sorted(
                {h for hs in lost.values() for h in hs}, key=lambda rid: pack.rule(rid).order
            )
        else:
            for slot, hs in lost.items():
                out.fields[(r.id, slot)] = hs
    if report:
        for rid, why in out.contradiction.items():
            r = pack.rule(rid)
            ctx.add(
                r.file,
                r.line,
                r.id,
                "dead-contradiction",
                ERROR,
                _("this rule can never fire: {why}").format(why=why),
            )
        for rid, hs in out.shadowed.items():
            r = pack.rule(rid)
            who = ", ".join(
                _("{rule} ({where}, priority {priority})").format(
                    rule=h, where=_where(pack.rule(h)), priority=pack.rule(h).priority
                )
                for h in hs
            )
            ctx.add(
                r.file,
                r.line,
                r.id,
                "dead-shadowed",
                ERROR,
                _(
                    "this rule never takes effect: whenever it matches, {who} already set {fields}; raise its "
                    "priority above theirs, narrow theirs, or remove it"
                ).format(who=who, fields=", ".join(sorted(r.then))),
            )
        for (rid, slot), hs in out.fields.items():
            r = pack.rule(rid)
            line = r.then[slot].line or r.line
            who = ", ".join(f"{h} ({_where(pack.rule(h))})" for h in hs)
            ctx.add(
                r.file,
                line,
                r.id,
                "shadowed-field",
                WARNING,
                _(
                    "then {slot} never takes effect: whenever this rule matches, {who} set {slot} first"
                ).format(slot=slot, who=who),
            )
    return out


def _minimal_cover(space: Space, boxes: list[Box], covers: list[Rule]) -> list[Rule]:
    """A smallest-by-removal subset of ``covers`` that still covers ``boxes`` (to name in a message)."""
    kept = sorted(covers, key=lambda h: (-h.priority, h.order))
    for h in reversed(list(kept)):
        trial = [x for x in kept if x is not h]
        try:
            if trial and _covered(space, boxes, trial):
                kept = trial
        except TooComplex:
            break
    return [h for h in kept if _overlaps(space, boxes, h)]


def _overlaps(space: Space, boxes: list[Box], h: Rule) -> bool:
    try:
        return bool(space.conj(boxes, space.dnf(h.when)))
    except TooComplex:
        return True


def _why_contradiction(r: Rule, pack: Pack, space: Space, compiled: CompiledPack) -> str:
    """Name the field whose tests contradict, and say whether earlier stages are the reason."""
    leaves = [x for x in iter_tests(r.when) if isinstance(x, Test)]
    fields = list(dict.fromkeys(t.field for t in leaves))
    raw = Space(
        pack,
        {n: _domain_of_type(F.DECISION_FIELDS[n], pack) for n in F.DECISION_FIELDS if _testable(n)},
        compiled.words,
    )
    for name in fields:
        only = [t for t in leaves if t.field == name]
        for sp, contradict in ((raw, True), (space, False)):
            try:
                box: list[Box] = [{}]
                for t in only:
                    box = sp.conj(box, sp.dnf(t))
                if box or not _plain_conj(r.when, only):
                    continue
            except TooComplex:
                continue
            tests = _(" and ").join(f"{t.op} {_fmt_value(t.value)}" for t in only)
            if contradict:
                return _("its tests on {field} ({tests}) contradict each other").format(
                    field=name, tests=tests
                )
            var, _how = sp.test(only[0])
            can = _describe(sp.domain(var))
            return _(
                "it tests {field} ({tests}), but when stage {stage} runs {var} can only be {can} "
                "(its default, or what earlier stages set)"
            ).format(field=name, tests=tests, stage=r.stage, var=var[2:], can=can)
    try:
        if not raw.dnf(r.when):
            return _("its conditions contradict each other")
    except TooComplex:
        pass
    return _("its conditions cannot hold together with what earlier stages can set")


def _plain_conj(c: Cond, tests: list[Test]) -> bool:
    """Whether every test in ``tests`` sits under conjunctions only (so their contradiction kills c)."""

    def walk(node: Cond, neg: bool) -> set[int]:
        if isinstance(node, Test):
            return {id(node)} if not neg else set()
        if isinstance(node, Not):
            return set()
        if isinstance(node, All) and not neg:
            out: set[int] = set()
            for x in node.items:
                out |= walk(x, neg)
            return out
        return set()

    top = walk(c, False)
    return all(id(t) in top for t in tests)


def _fmt_value(v: Atom | tuple[Atom, ...]) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return _fmt(v)


# -- conflicts -----------------------------------------------------------------------------------------


def _same_value(a: Value, b: Value) -> bool:
    return (a.kind, a.literal, a.source, a.table, a.column, a.add) == (
        b.kind,
        b.literal,
        b.source,
        b.table,
        b.column,
        b.add,
    )


def _conflicts(ctx: _Ctx, analysis: Analysis) -> None:
    pack = ctx.pack
    rules = [r for r in pack.rules if r.then]
    for i, a in enumerate(rules):
        for b in rules[i + 1 :]:
            if a.stage != b.stage or a.priority != b.priority:
                continue
            slots = [
                s
                for s in a.then
                if s in b.then
                and not resolution.by_highest(s)
                and (s, a.id) not in analysis.inert
                and (s, b.id) not in analysis.inert
                and not _same_value(a.then[s], b.then[s])
            ]
            if not slots:
                continue
            first, second = (a, b) if a.order < b.order else (b, a)
            space = analysis.spaces[a.stage]
            try:
                overlap = space.conj(space.dnf(a.when), space.dnf(b.when))
            except TooComplex:
                continue
            if not overlap:
                continue
            literal = [s for s in slots if a.then[s].kind == "literal" and b.then[s].kind == "literal"]
            shown = ", ".join(
                _("{field} ({a} vs {b})").format(
                    field=s, a=_show_value(first.then[s]), b=_show_value(second.then[s])
                )
                for s in slots
            )
            witness = _confirm(ctx, analysis, overlap, first, second) if literal else None
            if witness is not None:
                ctx.add(
                    second.file,
                    second.line,
                    second.id,
                    "conflict",
                    ERROR,
                    _(
                        "conflicts with {rule} ({where}): both match {witness}, both have priority {priority} "
                        "and they set {shown}; {rule} wins only because it comes first. Give one a higher "
                        "priority or make their conditions exclusive"
                    ).format(
                        rule=first.id,
                        where=_where(first),
                        witness=witness,
                        priority=first.priority,
                        shown=shown,
                    ),
                )
            else:
                why = (
                    _("they may set different values")
                    if not literal
                    else _("no example complaint on which both match could be confirmed")
                )
                ctx.add(
                    second.file,
                    second.line,
                    second.id,
                    "possible-conflict",
                    WARNING,
                    _(
                        "may conflict with {rule} ({where}): both can match the same complaint ({box}), both "
                        "have priority {priority}, and they set {shown}; {why}"
                    ).format(
                        rule=first.id,
                        where=_where(first),
                        box=_describe_box(overlap[0], space),
                        priority=first.priority,
                        shown=shown,
                        why=why,
                    ),
                )


def _show_value(v: Value) -> str:
    if v.kind == "literal":
        return _fmt_value(v.literal) if not isinstance(v.literal, str) or v.literal else '""'
    if v.kind == "copy":
        return _("copy of {field}").format(field=v.source)
    return _("lookup {table}.{column}").format(table=v.table, column=v.column)


def _describe_box(box: Box, space: Space | None = None) -> str:
    parts = []
    for var, con in sorted(box.items()):
        if var.startswith("kw:"):
            if not isinstance(con, Fin):
                parts.append(var)
            elif True in con.values:
                parts.append(_("text contains '{word}'").format(word=var[3:]))
            else:
                parts.append(_("text lacks '{word}'").format(word=var[3:]))
        elif var.startswith("re:"):
            if isinstance(con, Fin) and True in con.values:
                parts.append(_("pattern {pattern!r} matches").format(pattern=var[3:]))
            else:
                parts.append(_("pattern {pattern!r} fails").format(pattern=var[3:]))
        elif var.startswith("f:"):
            dom = space.domain(var) if space is not None else None
            if isinstance(con, Fin) and isinstance(dom, Fin) and len(con.values) > 5:
                rest = dom.values - con.values
                text = (
                    _("anything but {values}").format(values=_describe(Fin(rest)))
                    if len(rest) <= 5
                    else _("{n} values").format(n=len(con.values))
                )
                parts.append(f"{var[2:]} {text}")
            else:
                parts.append(f"{var[2:]} {_describe(con)}")
    return "; ".join(parts) or _("any complaint")


def _confirm(ctx: _Ctx, analysis: Analysis, overlap: list[Box], a: Rule, b: Rule) -> str | None:
    """Build example complaints from the overlap; return a description of one on which both fire."""
    from fenliu.domain.errors import ComplaintError
    from fenliu.domain.model import complaint_from_dict
    from fenliu.engine.decider import Decider

    if ctx.decider is None:
        ctx.decider = Decider(ctx.pack, backend="python", memoize=False)
    tries = 0
    for box in overlap:
        limits = {v: ctx.pack.stages.index(a.stage) for v in box}
        for steered in _steer(ctx, analysis, box, limits, depth=6):
            tries += 1
            if tries > MAX_WITNESSES:
                return None
            data = _complaint(steered, ctx)
            try:
                complaint = complaint_from_dict(data)
            except ComplaintError:
                continue
            outcome = ctx.decider.outcome(complaint)
            fired = {t.rule for t in outcome.trace}
            if a.id in fired and b.id in fired:
                return _show_complaint(data)
    return None


def _steer(ctx: _Ctx, analysis: Analysis, box: Box, limits: dict[str, int], depth: int) -> Iterator[Box]:
    """Boxes over complaint fields meant to lead to ``box``'s decision-field constraints.

    ``limits[var]`` is the index of the stage at which a decision-field constraint must hold: only rules of
    earlier stages can make it hold. Rules are tried highest stage and priority first.
    """
    pack = ctx.pack
    pending = [v for v in box if v.startswith("f:") and v[2:] in F.DECISION_FIELDS]
    unmet = [v for v in pending if not _holds_default(pack, v, box[v])]
    if not unmet or depth == 0:
        yield {k: c for k, c in box.items() if k not in pending}
        return
    var = unmet[0]
    name = var[2:]
    allowed = box[var]
    rest = {k: c for k, c in box.items() if k != var}
    si = limits.get(var, len(pack.stages))
    earlier = [r for r in pack.rules if pack.stages.index(r.stage) < si and name in r.then]
    earlier.sort(key=lambda r: (-pack.stages.index(r.stage), -r.priority, r.order))
    for r in earlier:
        v = r.then[name]
        ri = pack.stages.index(r.stage)
        space = analysis.spaces[r.stage]
        extra: Box = {}
        if not isinstance(allowed, Fin):
            continue
        if v.kind == "literal":
            if v.literal not in allowed.values:
                continue
        elif v.kind == "copy":
            extra[_fvar(v.source)] = Fin(frozenset(x for x in allowed.values if x not in _SKIPPED))
        else:
            table = pack.tables[v.table]
            keys = frozenset(k for k, row in table.rows.items() if row.get(v.column) in allowed.values)
            extra[_fvar(table.key)] = Fin(keys)
        try:
            alts = space.dnf(r.when)
        except TooComplex:
            continue
        for alt in alts[:4]:
            merged = space.meet_box(rest, alt)
            merged = space.meet_box(merged, extra) if merged is not None else None
            if merged is None:
                continue
            sub = dict(limits)
            for k in (*alt, *extra):
                sub[k] = min(sub.get(k, ri), ri)
            yield from _steer(ctx, analysis, merged, sub, depth - 1)


def _holds_default(pack: Pack, var: str, con: Con) -> bool:
    v = _default(pack, var[2:])
    if isinstance(con, Fin):
        return v in con.values
    if isinstance(con, Txt):
        return (v in con.values) == con.pos
    return False


def _pick(con: Con) -> Atom:
    if isinstance(con, Num):
        lo, li, hi, hi_in = con.ivs[0]
        if lo == -INF:
            return hi if hi_in else hi - 1
        if li:
            return int(lo) if con.integer or float(lo).is_integer() else lo
        return lo + 1 if hi == INF or hi - lo > 1 else (lo + hi) / 2
    if isinstance(con, Fin):
        vals = sorted(con.values, key=lambda x: (x in _SKIPPED or x is False, str(x)))
        return vals[0]
    if con.pos:
        return sorted(con.values)[0]
    n = 1
    while f"x{n}" in con.values:
        n += 1
    return "" if "" not in con.values else f"x{n}"


def _complaint(box: Box, ctx: _Ctx) -> dict[str, object]:
    data: dict[str, object] = {"id": "lint-example"}
    words = []
    for var, con in box.items():
        if var.startswith("kw:"):
            if _pick(con) is True:
                words.append(var[3:])
            continue
        if not var.startswith("f:"):
            continue
        name = var[2:]
        if name not in F.COMPLAINT_FIELDS or name in DERIVED_FIELDS:  # derived from the text
            continue
        v = _pick(con)
        if v in _SKIPPED and name != "existing_case_id":
            continue
        if name.startswith("region."):
            region = data.setdefault("region", {})
            assert isinstance(region, dict)
            region[name[7:]] = v
        elif name == "amount_yuan":
            assert isinstance(v, int | float)  # a number's domain gives a number
            data[name] = float(v)
        elif name in ("people_involved", "repeat_visits"):
            assert isinstance(v, int | float)
            data[name] = int(v)
        elif v != "":
            data[name] = v
    for var, con in box.items():
        if var.startswith("re:") and _pick(con) is True:
            found = _pattern_example(var[3:])
            if found is not None:
                words.append(found)
    if words:
        data["text"] = "，".join(words)
    elif "category_hint" not in data:
        data["text"] = next(
            (
                t
                for t in ("情况反映", "来访", "？", "…")
                if not any(w in normalize_text(t) for w in ctx.compiled.words)
            ),
            "？",
        )
    return data


def _pattern_example(regex: str) -> str | None:
    """A short text the pattern matches, when one of its alternatives is plain text."""
    rx = re.compile(regex)
    for part in regex.split("|"):
        cand = re.sub(r"[\\^$.*+?()\[\]{}]", "", part)
        if cand and rx.search(normalize_text(cand)):
            return cand
    return None


def _show_complaint(data: Mapping[str, object]) -> str:
    parts = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in data.items() if k != "id"]
    return _("e.g. the complaint {{{fields}}}").format(fields=", ".join(parts))


# -- keywords, gaps, reach, lookups -----------------------------------------------------------------


def _positive_leaves(c: Cond, negate: bool = False) -> Iterator[Test | Keywords | Pattern]:
    """Leaves that must hold (not fail) for ``c`` to hold."""
    if isinstance(c, All | AnyOf):
        for x in c.items:
            yield from _positive_leaves(x, negate)
    elif isinstance(c, Not):
        yield from _positive_leaves(c.item, not negate)
    elif not negate:
        yield c


def _keywords(ctx: _Ctx) -> None:
    claims: dict[str, list[tuple[Rule, str, int]]] = {}
    for r in ctx.pack.rules:
        cat = r.then.get("category")
        if cat is None or cat.kind != "literal":
            continue
        for leaf in _positive_leaves(r.when):
            if isinstance(leaf, Keywords):
                for w in dict.fromkeys(normalize_text(x) for x in leaf.words):
                    claims.setdefault(w, []).append((r, str(cat.literal), leaf.line))
    pairs: dict[tuple[str, str], list[str]] = {}
    for w, cl in claims.items():
        for i, (ra, ca, _da) in enumerate(cl):
            for rb, cb, _db in cl[i + 1 :]:
                if ca != cb:
                    first, second = (ra, rb) if ra.order < rb.order else (rb, ra)
                    pairs.setdefault((first.id, second.id), []).append(w)
    for (fa, sb), words in pairs.items():
        a, b = ctx.pack.rule(fa), ctx.pack.rule(sb)
        line = _first_line(b.when, _has_words(frozenset(words)), b.line)
        ca, cb = a.then["category"].literal, b.then["category"].literal
        if a.stage != b.stage:
            who = _("the later stage's rule decides")
        elif a.priority != b.priority:
            hi = a if a.priority > b.priority else b
            who = _(
                "{winner} wins (priority {high} > {low}), so for {loser} these words decide nothing"
            ).format(
                winner=hi.then["category"].literal,
                high=max(a.priority, b.priority),
                low=min(a.priority, b.priority),
                loser=cb if hi is a else ca,
            )
        else:
            who = _("same priority: {category} wins only because {rule} comes first").format(
                category=ca, rule=a.id
            )
        ctx.add(
            b.file,
            line,
            b.id,
            "keyword-shared",
            WARNING,
            (
                _("keywords {words} also classify as {category} in {rule} ({where}); {who}")
                if len(words) > 1
                else _("keyword {words} also classifies as {category} in {rule} ({where}); {who}")
            ).format(
                words=", ".join(repr(w) for w in words), category=ca, rule=a.id, where=_where(a), who=who
            ),
        )


#: Words too common in complaints to tell a category by themselves (put them in a ``together`` entry).
COMMON_WORDS: Final = frozenset(
    [
        "的",
        "了",
        "是",
        "我",
        "你",
        "他",
        "她",
        "我们",
        "他们",
        "问题",
        "反映",
        "我家",
        "不给",
        "情况",
        "要求",
        "解决",
        "领导",
        "政府",
        "处理",
        "一直",
        "现在",
        "这个",
        "那个",
        "没有",
        "什么",
        "怎么",
        "希望",
        "帮助",
        "帮忙",
        "事情",
        "部门",
        "村里",
        "镇上",
        "旗里",
        "老百姓",
        "群众",
        "钱",
    ]
)
#: Full-width separators that inside one term or word mean a list was typed into it.
_SEPARATORS: Final = re.compile("[，、；：。,;/ ]")
#: A term found in more than this share of the corpus tells no category.
CORPUS_SHARE: Final = 0.5


def _vocabulary(ctx: _Ctx, corpus: Sequence[str]) -> None:
    """The lexicon: an entry written twice in one category, terms shared by categories without a weight
    difference, one-character or very common terms, separators inside a term (a list typed into one),
    terms matching most of a corpus."""
    entries = ctx.pack.lexicon
    by_word: dict[str, list[LexiconEntry]] = {}
    written: dict[tuple[str, str, frozenset[str]], LexiconEntry] = {}
    for e in entries:
        key = (e.category, e.kind, frozenset(normalize_text(w) for w in e.words))
        first = written.setdefault(key, e)
        if first is not e:
            ctx.add(
                e.file,
                e.line,
                "",
                "lexicon-duplicate",
                WARNING,
                f"{e.category}: "
                + _(
                    "{entry!r} is written again here (first at line {line}): both count, so it weighs twice"
                ).format(entry=e.label, line=first.line),
            )
        for w in e.words:
            if _SEPARATORS.search(w):
                ctx.add(
                    e.file,
                    e.line,
                    "",
                    "lexicon-separator",
                    WARNING,
                    f"{e.category}: "
                    + _(
                        "{word!r} holds a separator; it matches only with the separator in the text "
                        "(give each word its own entry, or list them in together: words)"
                    ).format(word=w),
                )
        if e.kind == "against":
            continue
        norm = normalize_text(e.label) if e.kind == "term" else ""
        if e.kind == "term":
            by_word.setdefault(norm, []).append(e)
            if len(norm) == 1:
                ctx.add(
                    e.file,
                    e.line,
                    "",
                    "lexicon-short-term",
                    WARNING,
                    f"{e.category}: "
                    + _(
                        "one-character term {word!r} matches inside unrelated words (use a longer word, or a "
                        "together entry)"
                    ).format(word=norm),
                )
            elif norm in COMMON_WORDS:
                ctx.add(
                    e.file,
                    e.line,
                    "",
                    "lexicon-common-term",
                    WARNING,
                    f"{e.category}: "
                    + _("{word!r} is too common to tell a category (put it in a together entry)").format(
                        word=norm
                    ),
                )
    for word, es in by_word.items():
        cats = {e.category for e in es}
        if len(cats) < 2:
            continue
        weights = sorted({e.weight for e in es})
        top = [e for e in es if e.weight == weights[-1]]
        if len({e.category for e in top}) > 1:
            later = max(top, key=lambda e: (e.file, e.line))
            others = ", ".join(sorted({f"{e.category} ({e.file}:{e.line})" for e in top if e is not later}))
            ctx.add(
                later.file,
                later.line,
                "",
                "lexicon-shared-term",
                WARNING,
                f"{later.category}: "
                + _(
                    "{word!r} weighs {weight} here and in {others}: it tells neither category apart (weigh it "
                    "more where it belongs)"
                ).format(word=word, weight=f"{later.weight:g}", others=others),
            )
    if not corpus:
        return
    texts = [normalize_text(t) for t in corpus]
    counts: dict[str, int] = {}
    for word in by_word:
        counts[word] = sum(1 for t in texts if word in t)
    for word, n in counts.items():
        if n > CORPUS_SHARE * len(texts):
            e = by_word[word][0]
            ctx.add(
                e.file,
                e.line,
                "",
                "lexicon-too-common",
                WARNING,
                f"{e.category}: "
                + _("{word!r} is in {n} of the corpus's {total} complaints; it tells no category").format(
                    word=word, n=n, total=len(texts)
                ),
            )


#: A keyword of a rule that the texts of more than this share of a corpus hold decides for too many.
#: (A rule's keyword decides alone, where a lexicon term only weighs: its share is set lower.)
KEYWORD_CORPUS_SHARE: Final = 0.2


def _rule_keywords(ctx: _Ctx, corpus: Sequence[str]) -> None:
    """Rules' ``keywords:``: one-character and very common words (the lexicon's checks), and, with a
    corpus, words more than :data:`KEYWORD_CORPUS_SHARE` of its complaints hold."""
    texts = [normalize_text(t) for t in corpus]
    share: dict[str, int] = {}
    for r in ctx.pack.rules:
        for leaf in iter_tests(r.when):
            if not isinstance(leaf, Keywords):
                continue
            for w in dict.fromkeys(leaf.words):
                norm = normalize_text(w)
                if len(norm) == 1:
                    ctx.add(
                        r.file,
                        leaf.line,
                        r.id,
                        "keyword-short",
                        WARNING,
                        _(
                            "one-character keyword {word!r} matches inside unrelated words (use a longer word, "
                            "or test two words with all:)"
                        ).format(word=norm),
                    )
                elif norm in COMMON_WORDS:
                    ctx.add(
                        r.file,
                        leaf.line,
                        r.id,
                        "keyword-common",
                        WARNING,
                        _(
                            "keyword {word!r} is too common to tell complaints apart (use a more specific word)"
                        ).format(word=norm),
                    )
                if not texts or not norm:
                    continue
                if norm not in share:
                    share[norm] = sum(1 for t in texts if norm in t)
                if share[norm] > KEYWORD_CORPUS_SHARE * len(texts):
                    ctx.add(
                        r.file,
                        leaf.line,
                        r.id,
                        "keyword-too-common",
                        WARNING,
                        _(
                            "keyword {word!r} is in {n} of the corpus's {total} complaints (more than {pct}); "
                            "it decides for too many"
                        ).format(
                            word=norm, n=share[norm], total=len(texts), pct=f"{KEYWORD_CORPUS_SHARE:.0%}"
                        ),
                    )


def _gaps(ctx: _Ctx) -> None:
    pack = ctx.pack
    raw = Space(
        pack,
        {n: _domain_of_type(F.DECISION_FIELDS[n], pack) for n in F.DECISION_FIELDS if _testable(n)},
        ctx.compiled.words,
    )
    groups: dict[tuple[str, str, str], list[tuple[Rule, Num]]] = {}
    for r in pack.rules:
        try:
            boxes = raw.dnf(r.when)
        except TooComplex:
            continue
        vars_ = {v for b in boxes for v in b}
        if len(vars_) != 1 or not boxes:
            continue
        var = next(iter(vars_))
        cons = [b[var] for b in boxes]
        if not all(isinstance(c, Num) for c in cons):
            continue
        band = num([iv for c in cons if isinstance(c, Num) for iv in c.ivs], cons[0].integer)  # type: ignore[union-attr]
        for slot, v in r.then.items():
            if v.kind == "literal":
                groups.setdefault((r.stage, slot, var), []).append((r, band))
    for (stage, slot, var), members in groups.items():
        if len(members) < 2:
            continue
        integer = members[0][1].integer
        union = num([iv for _k, b in members for iv in b.ivs], integer)
        dom = _COMPLAINT_DOMAINS.get(var[2:])
        for lo_iv, hi_iv in zip(union.ivs, union.ivs[1:], strict=False):
            gap = num([(lo_iv[2], not lo_iv[3], hi_iv[0], not hi_iv[1])], integer)
            if dom is not None:
                gap = _num_meet(gap, dom)  # type: ignore[arg-type]
            if gap.empty():
                continue
            below = [r for r, b in members if b.ivs and any(iv[2] == lo_iv[2] for iv in b.ivs)]
            above = [r for r, b in members if b.ivs and any(iv[0] == hi_iv[0] for iv in b.ivs)]
            at = above[0] if above else members[-1][0]
            line = _first_line(at.when, _tests_field(var[2:]), at.line)
            below_s = ", ".join(f"{r.id} ({_where(r)})" for r in below)
            ctx.add(
                at.file,
                line,
                at.id,
                "threshold-gap",
                WARNING,
                _(
                    "{field} {gap} is covered by no rule of stage {stage} that sets {slot} by {field}: the band "
                    "below ends in {below}, the band above starts here; such complaints get {slot} from other "
                    "rules or the default"
                ).format(field=var[2:], gap=_describe(gap), stage=stage, slot=slot, below=below_s),
            )


def _reach(ctx: _Ctx, analysis: Analysis) -> None:
    pack = ctx.pack
    final = analysis.final
    cats = final.domain(_fvar("category"))
    t = pack.tables.get("categories")
    if t is not None and isinstance(cats, Fin):
        for code in t.rows:
            if code not in cats.values:
                file, line = t.row_lines[code]
                ctx.add(
                    file,
                    line,
                    code,
                    "category-unreachable",
                    WARNING,
                    _(
                        "category '{category}' is set by no rule that can take effect, is not the default, and "
                        "no hint can give it: no complaint can end in it (add a classify rule for it)"
                    ).format(category=code),
                )
    stages = final.domain(_fvar("stage"))
    if isinstance(stages, Fin) and t is not None:
        for s in model.STAGES:
            if s not in stages.values:
                ctx.add(
                    t.file,
                    t.line,
                    s,
                    "stage-unreachable",
                    WARNING,
                    _(
                        "no decision can be in funnel stage {stage}: no category enters there and no rule "
                        "that can take effect sets stage {stage}"
                    ).format(stage=s),
                )


def _lookups(ctx: _Ctx, analysis: Analysis) -> None:
    pack = ctx.pack
    for r in pack.rules:
        space = analysis.spaces[r.stage]
        for slot, v in r.then.items():
            if v.kind != "lookup" or (r.id, slot) in analysis.inert:
                continue
            table = pack.tables[v.table]
            key_dom = space.domain(_fvar(table.key))
            if not isinstance(key_dom, Fin):
                continue
            try:
                boxes = space.dnf(r.when)
            except TooComplex:
                continue
            possible: set[Atom] = set()
            for b in boxes:
                c = b.get(_fvar(table.key), key_dom)
                if isinstance(c, Fin):
                    possible |= c.values
            missing = sorted(str(k) for k in possible if str(k) not in table.rows and k not in _SKIPPED)
            if missing:
                ctx.add(
                    r.file,
                    v.line or r.line,
                    r.id,
                    "lookup-no-row",
                    WARNING,
                    _(
                        "then {slot}: table {table} has no row for {key} {values}, which a decision can carry "
                        "here; the lookup then leaves {slot} unchanged"
                    ).format(slot=slot, table=v.table, key=table.key, values=", ".join(missing)),
                )


# -- explained warnings ------------------------------------------------------------------------------


def _manifest_lines(pack: Pack) -> tuple[str, list[int]]:
    rel = f"{pack.root.name}/pack.yaml"
    try:
        doc = load_yaml((pack.root / "pack.yaml").read_text("utf-8"))
    except (OSError, YamlProblem):
        return rel, []
    items = doc.get("explained_warnings") if isinstance(doc, YDict) else None
    if isinstance(items, YList):
        return rel, [items.line_of(i) for i in range(len(items))]
    return rel, []


def _explain(pack: Pack, findings: list[Problem]) -> list[Problem]:
    entries = list(pack.explained_warnings)
    if not entries:
        return findings
    used = [False] * len(entries)
    out: list[Problem] = []
    for f in findings:
        if f.severity == WARNING:
            for i, e in enumerate(entries):
                if e.get("code") == f.code and e.get("rule", f.rule) in ("", f.rule):
                    used[i] = True
                    f = Problem(
                        f.file,
                        f.line,
                        f.rule,
                        f.code,
                        f.message + _(" (reason: {reason})").format(reason=e.get("reason", "")),
                        EXPLAINED,
                    )
                    break
        out.append(f)
    rel, lines = _manifest_lines(pack)
    for i, e in enumerate(entries):
        if not used[i]:
            out.append(
                Problem(
                    rel,
                    lines[i] if i < len(lines) else 0,
                    str(e.get("rule", "")),
                    "unused-explanation",
                    (
                        _(
                            "explained_warnings names {code} for {rule}, which the lint no longer reports; "
                            "remove the entry"
                        )
                        if e.get("rule")
                        else _(
                            "explained_warnings names {code}, which the lint no longer reports; remove the entry"
                        )
                    ).format(code=e.get("code"), rule=e.get("rule", "")),
                    WARNING,
                )
            )
    return sorted(out)


# ---------------------------------------------------------------------------------------------------


def render_findings(findings: list[Problem], show: Callable[[Problem], str], *, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(
            [
                {
                    "file": f.file,
                    "line": f.line,
                    "rule": f.rule,
                    "code": f.code,
                    "severity": f.severity,
                    "message": f.message,
                }
                for f in findings
            ],
            ensure_ascii=False,
            indent=2,
        )
    lines = [show(f) for f in findings]
    errors = sum(f.severity == ERROR for f in findings)
    warnings = sum(f.severity == WARNING for f in findings)
    explained = sum(f.severity == EXPLAINED for f in findings)
    tail = _(", {n} explained").format(n=explained) if explained else ""
    lines.append(
        _("{errors} error(s), {warnings} warning(s)").format(errors=errors, warnings=warnings) + tail
    )
    return "\n".join(lines)
