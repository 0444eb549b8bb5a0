"""``fenliu explain`` and ``fenliu eval --explain``: why a rule fired or did not, for one complaint.

For each stage, in order, each of its rules (or the one rule, or the one stage, asked for): whether it
fired, with what it set (or lost, and to which rule); if it did not fire, the *first* part of its
``when`` that failed, with its ``file:line``: the field, the operator, the value expected and the value
the rule saw; for ``keywords``, the words looked for (none found); for a ``pattern``, the pattern.

The facts a rule sees are the decider's own: the complaint is walked through the stages by
:class:`~fenliu.engine.decider.Decider` itself (its plain, unmemoized walk), so a stage sees what the
stages before it set, exactly as in a real decision. Which rules fired is the decider's match; which
part of a rule failed is found by asking :func:`fenliu.compiling.compiler.evaluate` about each part in
turn, so no matching semantics live here (``tests/test_explain.py`` holds "fired" equal to the real
decision's trace on the corpus).

The complainant's personal data never appears: no rule reads it, the explanation names the fields that
were given and says they are not shown, and a value a rule saw that is shaped like an id number or a
phone (a case number typed as one) is not shown either. This module knows nothing of the command line
or of serving.
"""

from __future__ import annotations

import difflib
import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fenliu.compiling.compiler import (
    CompiledPack,
    Fact,
    FactValue,
    StagePlan,
    evaluate,
    fact_name,
    normalize_text,
)
from fenliu.domain.model import Complaint, Decision
from fenliu.domain.personal import mask
from fenliu.engine.decider import Decider
from fenliu.engine.matchers import PythonMatcher
from fenliu.i18n import _
from fenliu.packs.types import All, AnyOf, Cond, Keywords, Not, Pack, Pattern, Rule, Test

#: The complainant's fields: personal data, never shown.
PERSONAL_FIELDS = ("complainant.name", "complainant.id_number", "complainant.phone")


@dataclass(frozen=True, slots=True)
class Failed:
    """Why a condition does not hold: the first part of it that fails.

    ``kind`` is ``test``, ``keywords``, ``pattern`` or ``any``. ``negated``: the part sits under a
    ``not:`` and fails because it *holds* (then ``words`` are the keywords found, and a pattern matched).
    ``any``: no alternative holds, and ``alternatives`` says why, one by one.
    """

    kind: str
    line: int
    negated: bool = False
    field: str = ""
    op: str = ""
    expected: object = None
    actual: FactValue = None
    hidden: bool = False  # the value seen is shaped like personal data: not shown
    words: tuple[str, ...] = ()
    pattern: str = ""
    alternatives: tuple[Failed, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleExplained:
    rule: Rule
    fired: bool
    failed: Failed | None = None  # not fired: why
    set: Mapping[str, object] | None = None  # fired: what it set
    overruled: Mapping[str, str] | None = None  # fired: the fields it lost, and to which rule
    found: tuple[str, ...] = ()  # fired: the keywords of its `keywords` conditions that were found


@dataclass(frozen=True, slots=True)
class StageExplained:
    stage: str
    rules: tuple[RuleExplained, ...]


@dataclass(frozen=True, slots=True)
class Explained:
    pack: str
    revision: str
    complaint_id: str  # masked
    personal: tuple[str, ...]  # the complainant's fields that were given (never their values)
    stages: tuple[StageExplained, ...]


# ---------------------------------------------------------------------------------------------------


def unknown_selection(pack: Pack, rule: str | None, stage: str | None) -> str | None:
    """A one-line message when ``--rule`` or ``--stage`` names nothing in ``pack`` (with the nearest
    name), or names a rule that is not in that stage; ``None`` when both are fine."""
    if stage is not None and stage not in pack.stages:
        return _("no stage '{stage}' in pack {pack}{hint}").format(
            stage=stage, pack=pack.name, hint=_nearest(stage, pack.stages)
        )
    if rule is None:
        return None
    ids = [r.id for r in pack.rules]
    if rule not in ids:
        return _("no rule '{rule}' in pack {pack}{hint}").format(
            rule=rule, pack=pack.name, hint=_nearest(rule, ids)
        )
    found = pack.rule(rule)
    if stage is not None and found.stage != stage:
        return _("rule '{rule}' is in stage {actual}, not {stage}").format(
            rule=rule, actual=found.stage, stage=stage
        )
    return None


def _nearest(word: str, choices: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return _(" (did you mean {guess}?)").format(guess=near[0]) if near else ""


def explain(
    decider: Decider, complaint: Complaint, *, rule: str | None = None, stage: str | None = None
) -> Explained:
    """Why each rule of each stage (or only ``rule``, or only the rules of ``stage``) fired or did not."""
    if decider.enrichment and not complaint.enriched:
        complaint = decider.enrichment(complaint)
    cp = decider.compiled
    key, present = cp.read(complaint)
    python = PythonMatcher(cp)
    seen: list[tuple[StagePlan, Fact]] = []

    def match(plan: StagePlan, fact: Fact) -> list[Rule]:
        seen.append((plan, dict(fact)))
        return python.matches(plan, fact)

    # The decider's own walk, every stage evaluated, nothing remembered: the facts are its own.
    _node, steps = decider._walk(complaint, key, match, False)
    stages: list[StageExplained] = []
    for (plan, fact), step in zip(seen, steps, strict=True):
        if stage is not None and plan.name != stage:
            continue
        fired = {r.id for r in step.fired}
        entries = {e.rule: e for e in step.trace}
        rules: list[RuleExplained] = []
        for r in plan.rules:
            if rule is not None and r.id != rule:
                continue
            if r.id in fired:
                e = entries[r.id]
                rules.append(RuleExplained(r, True, None, e.set, e.overruled, _found(r.when, present)))
                continue
            why = _why(r.when, fact, cp, present, negated=False)
            if why is None:  # pragma: no cover - the interpreter said no, so some part fails
                raise AssertionError(f"{r.id}: no failing condition")
            rules.append(RuleExplained(r, False, why))
        if rules:
            stages.append(StageExplained(plan.name, tuple(rules)))
    person = complaint.complainant
    given = (person.name, person.id_number, person.phone)
    return Explained(
        decider.pack.name,
        decider.pack.revision,
        mask(complaint.id),
        tuple(name for name, v in zip(PERSONAL_FIELDS, given, strict=True) if v),
        tuple(stages),
    )


def _found(c: Cond, present: frozenset[str]) -> tuple[str, ...]:
    """The words of ``c``'s ``keywords`` conditions (as written) that the title or text holds."""
    out: list[str] = []
    if isinstance(c, Keywords):
        out += [w for w in c.words if normalize_text(w) in present]
    elif isinstance(c, All | AnyOf):
        for x in c.items:
            out += _found(x, present)
    elif isinstance(c, Not):
        pass  # words a rule must not find are not what made it fire
    return tuple(dict.fromkeys(out))


def _why(c: Cond, fact: Fact, cp: CompiledPack, present: frozenset[str], *, negated: bool) -> Failed | None:
    """The first part of ``c`` (of ``not c`` when ``negated``) that fails on ``fact``; ``None`` if it
    holds. Whether each part holds is :func:`evaluate`'s answer."""
    holds = evaluate(c, fact, cp)
    if holds != negated:
        return None
    if isinstance(c, Test):
        actual = fact[fact_name(c.field)]
        hidden = isinstance(actual, str) and mask(actual) != actual
        expected = list(c.value) if isinstance(c.value, tuple) else c.value
        return Failed(
            "test", c.line, negated, c.field, c.op, expected, None if hidden else actual, hidden=hidden
        )
    if isinstance(c, Keywords):
        found = tuple(w for w in c.words if normalize_text(w) in present) if negated else c.words
        return Failed("keywords", c.line, negated, words=found)
    if isinstance(c, Pattern):
        return Failed("pattern", c.line, negated, pattern=c.regex)
    if isinstance(c, Not):
        return _why(c.item, fact, cp, present, negated=not negated)
    # all (not any) fails at its first part that fails; any (not all) fails when every part does.
    conjunction = isinstance(c, All) != negated
    parts = [_why(x, fact, cp, present, negated=negated) for x in c.items]
    failing = tuple(p for p in parts if p is not None)
    if conjunction:
        return failing[0]
    return Failed("any", c.line, negated, alternatives=failing)


# ---------------------------------------------------------------------------------------------------
# Rendering


def _json(v: object) -> str:
    return json.dumps(list(v) if isinstance(v, tuple) else v, ensure_ascii=False)


def _plain(v: object) -> str:
    """A value a rule set, as the trace shows it, without quotes."""
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_plain(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return str(v)


def _short(s: str, most: int = 24) -> str:
    """A long value (a statutory route) cut for a table cell."""
    return s if len(s) <= most else s[: most - 1] + "…"


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in s)


def _pad(s: str, width: int) -> str:
    return s + " " * max(0, width - _width(s))


def describe(f: Failed) -> list[str]:
    """A failed condition in words: one line, or, for ``any``, a line and one per alternative."""
    if f.kind == "test":
        actual = _("(personal data, not shown)") if f.hidden else _json(f.actual)
        cond = f"{f.field} {f.op} {_json(f.expected)}"
        if f.negated:
            return [_("not {condition}: but the value is {actual}").format(condition=cond, actual=actual)]
        return [_("{condition}: the value is {actual}").format(condition=cond, actual=actual)]
    if f.kind == "keywords":
        words = ", ".join(f.words)
        if f.negated:
            return [_("not keywords: found {words} in the title or text").format(words=words)]
        return [_("keywords [{words}]: none of them in the title or text").format(words=words)]
    if f.kind == "pattern":
        if f.negated:
            return [_("not pattern {pattern}: it matches the title or text").format(pattern=f.pattern)]
        return [_("pattern {pattern}: no match in the title or text").format(pattern=f.pattern)]
    lines = [_("none of the {n} alternatives holds:").format(n=len(f.alternatives))]
    for alt in f.alternatives:
        sub = describe(alt)
        lines.append(_("line {line}: ").format(line=alt.line) + sub[0])
        lines += ["  " + s for s in sub[1:]]
    return lines


def did(r: RuleExplained) -> str:
    """What a fired rule did: the fields it set, those it lost (and to whom)."""
    parts = []
    if r.set:
        parts.append(_("set {fields}").format(fields=", ".join(f"{k}={_plain(v)}" for k, v in r.set.items())))
    if r.overruled:
        lost = ", ".join(f"{k} → {who}" for k, who in r.overruled.items())
        parts.append(_("overruled: {fields}").format(fields=lost))
    if not parts:
        parts.append(_("sets nothing (guidance only)") if r.rule.guidance else _("sets nothing"))
    if r.found:
        parts.append(_("found {words}").format(words=", ".join(r.found)))
    return "; ".join(parts)


def render(ex: Explained, show_file: Callable[[str], str] = str) -> str:
    """The explanation as the author reads it: per stage, per rule, fired or not and why."""
    out = [
        _("{pack} {revision}: complaint {id}").format(pack=ex.pack, revision=ex.revision, id=ex.complaint_id)
    ]
    for name in ex.personal:
        out.append(f"  {name}: " + _("(personal data, not shown)"))
    yes, no = _("fired"), _("not fired")
    label = max(_width(yes), _width(no))
    for st in ex.stages:
        n = sum(r.fired for r in st.rules)
        out.append("")
        out.append(
            _("stage {stage}: {fired} of {rules} rules fired").format(
                stage=st.stage, fired=n, rules=len(st.rules)
            )
        )
        width = max(_width(r.rule.id) for r in st.rules)
        for r in st.rules:
            where = f"{show_file(r.rule.file)}:{r.rule.line}"
            out.append(f"  {_pad(yes if r.fired else no, label)}  {_pad(r.rule.id, width)}  {where}")
            indent = " " * (label + 4)
            if r.fired:
                out.append(indent + did(r))
            elif r.failed is not None:
                lines = describe(r.failed)
                head = _("first failed condition, line {line}: ").format(line=r.failed.line)
                out.append(indent + head + lines[0])
                out += [indent + "  " + s for s in lines[1:]]
    return "\n".join(out)


def render_decision(
    decision: Decision, rules: Mapping[str, Rule], show_file: Callable[[str], str] = str
) -> str:
    """``fenliu eval --explain``: a decision in one line, then its trace as a table (stage, rule,
    file:line, what it set)."""
    o = decision.outcome
    summary = [f"category={o.category}", f"color={o.color}", f"tier={o.tier}"]
    if o.excluded:
        summary += [f"exclusion={o.exclusion}", f"referred_to={o.referred_to}"]
    else:
        summary += [f"approach={o.approach}", f"owner_department={o.owner_department}"]
    summary.append(f"stage={o.stage}")
    out = [f"{mask(decision.complaint_id)}: " + " ".join(summary)]
    head = (_("stage"), _("rule"), "file:line", _("set"))
    rows: list[tuple[str, str, str, str]] = []
    for e in o.explanation.trace():
        rule = rules.get(e.rule)
        where = f"{show_file(rule.file)}:{rule.line}" if rule is not None else f"{e.file}:{e.line}"
        did = ", ".join(f"{k}={_short(_plain(v))}" for k, v in e.set.items())
        if e.overruled:
            lost = ", ".join(f"{k} → {who}" for k, who in e.overruled.items())
            did = (did + "; " if did else "") + _("overruled: {fields}").format(fields=lost)
        rows.append((e.stage, e.rule, where, did or "-"))
    widths = [max(_width(row[i]) for row in [head, *rows]) for i in range(3)]
    for row in [head, *rows]:
        out.append("  " + "  ".join(_pad(row[i], widths[i]) for i in range(3)) + "  " + row[3])
    return "\n".join(out)
