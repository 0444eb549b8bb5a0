"""Run a pack's own test cases (``*_test.yaml``) and measure what they cover.

A case gives a complaint and a subset of the decision it expects. ``co_departments`` is compared as a
set; ``deadlines`` compares only the deadlines the case lists, as instants with their offsets. ``fired``
and ``not_fired`` name rules that must (not) appear in the trace.

A failure says why, from the decision's own trace: for each decision field that differs, the rule whose
value the decision kept (with its ``file:line``, and the rules that set the field too but lost), or that
no rule set it; for a rule a case says fires and that did not, the first part of its ``when`` that failed
(:mod:`fenliu.authoring.explain`'s answer, which never shows the complainant's personal data); for a rule
that must not fire and did, what it set.

Coverage: a rule is covered when some case fires it *and* it changes that case's decision or speaks to
the citizen; a table row is covered when some case's decision reads it (a lookup) or names it (as
category, exclusion, or a department).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

from fenliu.authoring import explain
from fenliu.domain import fields as F
from fenliu.domain.errors import ComplaintError
from fenliu.domain.model import DERIVED_FIELDS, Complaint, Decision, complaint_from_dict, parse_timestamp
from fenliu.engine.decider import Decider
from fenliu.i18n import _
from fenliu.packs.load import describe
from fenliu.packs.types import Case, Pack, Rule

#: A deadline a case expects (``deadlines.first_contact_by``) → the decision field rules set for it.
_DEADLINE_FIELDS = {by: within for within, by in F.DEADLINE_SLOTS.items()}


@dataclass(frozen=True, slots=True)
class SetBy:
    """Who set a decision field: the rule whose value the decision kept (``None``: no rule set it, the
    field holds its default), and the rules that set it too and lost to another."""

    rule: Rule | None
    overruled: tuple[str, ...] = ()


@dataclass(slots=True)
class CaseFailure:
    case: Case
    diffs: list[tuple[str, object, object]]  # (field, expected, got)
    error: str = ""
    #: a differing decision field (as the diff names it) → who set it, from the decision's trace
    set_by: dict[str, SetBy] = field(default_factory=dict)
    #: a rule of ``fired``/``not_fired`` that went the other way → why (what failed, or what it set)
    rules: dict[str, explain.RuleExplained] = field(default_factory=dict)

    def render(self, show_file: Callable[[str], str] = str) -> str:
        head = f"{show_file(self.case.file)}:{self.case.line}: " + _("FAIL {case}").format(
            case=self.case.name
        )
        if self.error:
            return f"{head}\n    {self.error}"
        lines = [head]
        for name, want, got in self.diffs:
            lines.append(
                f"    {name}: " + _("expected {want}, got {got}").format(want=_show(want), got=_show(got))
            )
            lines += ["      " + s for s in self._why(name, show_file)]
        return "\n".join(lines)

    def _why(self, name: str, show_file: Callable[[str], str]) -> list[str]:
        """The lines under a diff: who set the field, or why the rule did (not) fire."""
        if name in self.set_by:
            by = self.set_by[name]
            if by.rule is None:
                said = _("no rule set it: the default")
            else:
                said = _("set by {rule} ({where})").format(
                    rule=by.rule.id, where=f"{show_file(by.rule.file)}:{by.rule.line}"
                )
            if by.overruled:
                said += _(", overruling {rules}").format(rules=", ".join(by.overruled))
            return [said]
        rid = name.removeprefix("fired ")
        r = self.rules.get(rid) if name.startswith("fired ") else None
        if r is None:
            return []
        where = f"{show_file(r.rule.file)}:{r.rule.line}"
        if r.fired:
            return [_("{rule} ({where}) fired: {did}").format(rule=rid, where=where, did=explain.did(r))]
        if r.failed is None:  # pragma: no cover - a rule that did not fire has a failing condition
            return []
        failed = explain.describe(r.failed)
        head = _("{rule} ({where}) did not fire: ").format(rule=rid, where=where) + _(
            "first failed condition, line {line}: "
        ).format(line=r.failed.line)
        return [head + failed[0]] + ["  " + s for s in failed[1:]]


@dataclass(slots=True)
class CaseReport:
    total: int = 0
    failures: list[CaseFailure] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)
    rows: set[tuple[str, str]] = field(default_factory=set)
    uncovered_rules: list[tuple[str, str, int]] = field(default_factory=list)  # (rule id, file, line)
    uncovered_rows: list[tuple[str, str, str, int]] = field(default_factory=list)  # (table, row, file, line)

    @property
    def passed(self) -> int:
        return self.total - len(self.failures)


def _show(v: object) -> str:
    import json

    return json.dumps(v, ensure_ascii=False)


def _same_instant(want: object, got: object) -> bool:
    if want is None or got is None:
        return want is got
    try:
        a, b = parse_timestamp(str(want)), parse_timestamp(str(got))
    except ValueError:
        return False
    return a == b and a.utcoffset() == b.utcoffset()


def _texts(v: object) -> TypeGuard[list[str]]:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_case(case: Case, decision: Decision) -> list[tuple[str, object, object]]:
    got = decision.to_dict(trace=True)
    diffs: list[tuple[str, object, object]] = []
    for key, want in case.expect.items():
        if key == "deadlines" and isinstance(want, dict):
            for dname, dwant in want.items():
                dgot = got["deadlines"].get(dname, _("<no such deadline>"))
                if not _same_instant(dwant, dgot):
                    diffs.append((f"deadlines.{dname}", dwant, dgot))
            continue
        if key not in got or key in ("trace", "notes", "decision_id"):
            diffs.append((key, want, _("<not a decision field>")))
            continue
        value = got[key]
        if key == "co_departments" and _texts(want) and _texts(value):
            if sorted(want) != sorted(value):
                diffs.append((key, sorted(want), sorted(value)))
        elif value != want:
            diffs.append((key, want, value))
    fired = [t["rule"] for t in got["trace"]]
    for rid in case.fired:
        if rid not in fired:
            diffs.append((f"fired {rid}", True, False))
    for rid in case.not_fired:
        if rid in fired:
            diffs.append((f"fired {rid}", False, True))
    return diffs


def _failure(
    case: Case,
    diffs: list[tuple[str, object, object]],
    decider: Decider,
    complaint: Complaint,
    decision: Decision,
) -> CaseFailure:
    """A failed case, with why: who set each differing field, why each rule named went the other way."""
    trace = decision.outcome.explanation.trace()
    ids = {r.id for r in decider.pack.rules}
    set_by: dict[str, SetBy] = {}
    rules: dict[str, explain.RuleExplained] = {}
    for name, _want, _got in diffs:
        slot = _DEADLINE_FIELDS.get(name.removeprefix("deadlines."), "") if "." in name else name
        if slot in F.DECISION_FIELDS:
            # stages run in order, so the last rule of the trace that set the field set its value
            won = [e.rule for e in trace if slot in e.set]
            lost = tuple(dict.fromkeys(e.rule for e in trace if won and e.overruled.get(slot) == won[-1]))
            set_by[name] = SetBy(decider.pack.rule(won[-1]) if won else None, lost)
        elif name.startswith("fired "):
            rid = name.removeprefix("fired ")
            if rid in ids:
                found = [r for st in explain.explain(decider, complaint, rule=rid).stages for r in st.rules]
                if found:
                    rules[rid] = found[0]
    return CaseFailure(case, diffs, set_by=set_by, rules=rules)


def _code(pack: Pack, table: str, v: str) -> bool:
    return v == "" or (table in pack.tables and v in pack.tables[table].rows)


def _derived_ok(pack: Pack, name: str, v: object) -> bool:
    """Whether a case gives a derived field a value of its type (the field table's)."""
    t = F.COMPLAINT_BY_NAME[name].type
    if t.kind == "bool":
        return isinstance(v, bool)
    if t.kind == "int":
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if t.kind == "enum":
        return v in t.values
    if t.kind == "code":
        return isinstance(v, str) and _code(pack, t.table, v)
    return isinstance(v, str)


def run_cases(pack: Pack, decider: Decider, *, now: datetime | None = None) -> CaseReport:
    report = CaseReport()
    for case in pack.cases:
        report.total += 1
        data = dict(case.complaint)
        data.setdefault("id", case.name[:100])
        # A case may give fields the enrichers derive (text_category, model_confident, ...): the
        # enrichers run, then the given values replace theirs.
        derived: dict[str, Any] = {k: data.pop(k) for k in DERIVED_FIELDS if k in data}
        bad = [k for k, v in derived.items() if not _derived_ok(pack, k, v)]
        try:
            complaint = complaint_from_dict(data, now=now)
        except ComplaintError as e:
            report.failures.append(
                CaseFailure(case, [], _("the case's complaint is invalid: {why}").format(why=e))
            )
            continue
        if bad:
            why = ", ".join(
                _("{field} must be {kind}").format(field=k, kind=describe(F.COMPLAINT_BY_NAME[k].type))
                for k in bad
            )
            report.failures.append(
                CaseFailure(case, [], _("the case's complaint is invalid: {why}").format(why=why))
            )
            continue
        if derived:
            complaint = dataclasses.replace(decider.enrichment(complaint), enriched=True, **derived)
        decision = decider.decide(complaint)
        diffs = check_case(case, decision)
        if diffs:
            report.failures.append(_failure(case, diffs, decider, complaint, decision))
        _cover(report, decision, pack)
    _uncovered(report, pack)
    return report


def _cover(report: CaseReport, decision: Decision, pack: Pack) -> None:
    o = decision.outcome
    for t in o.trace:
        rule = pack.rule(t.rule)
        if t.set or (not rule.then and rule.guidance):
            report.fired.add(t.rule)
        for ref in t.table_rows:
            tname, _sep, row = ref.partition(".")
            report.rows.add((tname, row))
    report.rows.add(("categories", o.category))
    if o.exclusion:
        report.rows.add(("exclusions", o.exclusion))
    for d in (o.owner_department, o.referred_to, *o.co_departments):
        if d:
            report.rows.add(("departments", d))
    for table in pack.tables.values():
        if table.key in F.DECISION_FIELDS and table.key not in ("category", "exclusion"):
            # a row of a table keyed by a decision field is reached when a decision carries its key
            value = getattr(o, table.key, None)
            if isinstance(value, str) and value:
                report.rows.add((table.name, value))


def _uncovered(report: CaseReport, pack: Pack) -> None:
    # A pack's cases answer for its own layer: the rules and rows an extending pack adds or changes.
    # The base pack's cases cover the base.
    top = pack.layers[-1]
    for r in pack.rules:
        if r.layer == top and r.id not in report.fired:
            report.uncovered_rules.append((r.id, r.file, r.line))
    for t in pack.tables.values():
        for row in t.rows:
            if t.row_layers.get(row) == top and (t.name, row) not in report.rows:
                file, line = t.row_lines[row]
                report.uncovered_rows.append((t.name, row, file, line))
