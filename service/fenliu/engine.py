"""Evaluate a compiled pack on a complaint: stages in order, conflicts resolved, a full trace.

For each stage, in the pack's order:

1. a fact is built from the complaint's features and the decision fields set so far;
2. the matcher returns the stage's rules whose ``when`` holds — the durable_rules engine
   (:class:`DurableMatcher`) or the plain Python interpretation (:class:`PythonMatcher`), which must
   agree on every complaint (the differential test checks it);
3. matched rules are ordered by priority (higher first), then by their position in the pack;
4. for each decision field, the first rule in that order that sets it wins — except ``color``, where
   the highest colour wins. ``then`` values are computed from the decision as it stood *before* the stage;
5. winners are applied; every matched rule goes into the trace with what it set and what it lost, and to
   which rule.

An :class:`Outcome` depends only on the complaint's class of input (see :mod:`fenliu.compiler`), so a
:class:`Decider` may memoize outcomes per class. The engine lock is held only while the engine runs.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fenliu import _durable
from fenliu import fields as F
from fenliu.compiler import CompiledPack, StagePlan, compile_pack, evaluate
from fenliu.errors import PackError
from fenliu.model import COLORS, STAGES, Complaint, Decision, Outcome, PackId, TraceEntry, deadlines_for
from fenliu.pack import Pack, Rule, Value

log = logging.getLogger("fenliu.engine")

_COLOR_RANK = {c: i for i, c in enumerate(COLORS)}
_SKIP = object()


class PythonMatcher:
    """The plain interpretation: conditions evaluated directly on the fact."""

    def __init__(self, cp: CompiledPack) -> None:
        self.cp = cp

    def matches(self, plan: StagePlan, fact: dict[str, Any], key: object = None) -> list[Rule]:
        return [r for r in plan.rules if evaluate(r.when, fact, self.cp)]


class DurableMatcher:
    """The durable_rules engine: one ruleset for the whole pack, one session per decision."""

    def __init__(self, cp: CompiledPack) -> None:
        self.cp = cp
        rules: dict[str, dict[str, Any]] = {}
        self._rule: dict[str, Rule] = {}
        for plan in cp.stages:
            for name, expr in plan.expressions.items():
                qualified = f"s{plan.index}_{name}"
                rules[qualified] = expr
                self._rule[qualified] = plan.rule_by_name[name]
        self.ruleset = _durable.Ruleset(rules)

    def session(self) -> Any:
        return self.ruleset.session()

    def matches_in(self, session: _durable.Session, fact: dict[str, Any]) -> list[Rule]:
        return [self._rule[n] for n in session.fire(fact)]

    def close(self) -> None:
        self.ruleset.close()


@dataclass(frozen=True, slots=True)
class _Transition:
    """What one stage did to a decision: (field, value, rule) updates, its trace, the rules that speak."""

    updates: tuple[tuple[str, Any, str], ...]
    trace: tuple[TraceEntry, ...]
    guidance: tuple[Rule, ...]


def _then_reads(plan: StagePlan, pack: Pack) -> tuple[str, ...]:
    """The fields a stage's `then` values read: copied fields, and the keys of looked-up tables."""
    names: set[str] = set()
    for rule in plan.rules:
        for v in rule.then.values():
            if v.kind == "copy":
                names.add(v.source)
            elif v.kind == "lookup":
                names.add(pack.tables[v.table].key)
    return tuple(sorted(names))


class Decider:
    """A prepared pack: compile once, decide many times. Thread-safe."""

    def __init__(
        self, pack: Pack, *, backend: str = "durable", memoize: bool = True, cache_size: int = 2048
    ) -> None:
        self.pack = pack
        self.compiled = compile_pack(pack)
        if self.compiled.problems:
            raise PackError(self.compiled.problems)
        self.backend = backend
        self.id = PackId(pack.name, pack.revision, pack.digest)
        self._python = PythonMatcher(self.compiled)
        self._durable: DurableMatcher | None = DurableMatcher(self.compiled) if backend == "durable" else None
        self._memoize = memoize
        self._closed = False
        self._cache: OrderedDict[tuple[Any, ...], Outcome] = OrderedDict()
        self._cache_size = cache_size
        # Matching memoized per stage: the rules a stage's fact matches depend only on that fact's class.
        # stage_hits: stages answered from memory; stage_misses: stages the engine evaluated.
        self._stage_cache: dict[tuple[Any, ...], tuple[Rule, ...]] = {}
        self._stage_cache_size = 16384  # each memory (matching, transitions) holds at most this many entries
        self.stage_hits = 0
        self.stage_misses = 0
        # Per stage, how each tested field is reduced to its class (None: it is finite already).
        self._stage_abstractors = [
            [self.compiled.field_abstractor(name) for name in plan.fields] for plan in self.compiled.stages
        ]
        self._transitions: dict[tuple[Any, ...], _Transition] = {}
        self._readers = [[self._reader(name) for name in plan.fields] for plan in self.compiled.stages]
        self._then_reads = [_then_reads(plan, pack) for plan in self.compiled.stages]
        self._cache_lock = threading.Lock()
        self.fallbacks = 0
        self.cache_hits = 0
        self.cache_misses = 0
        cats = pack.categories
        self._arbitrable = {code: bool(row.get("arbitrable")) for code, row in cats.items()}
        self._names = {
            "category": {code: str(row.get("name", code)) for code, row in cats.items()},
            "department": {
                code: str(row.get("name", code)) for code, row in pack.tables["departments"].rows.items()
            },
            "exclusion": {
                code: str(row.get("name", code)) for code, row in pack.tables["exclusions"].rows.items()
            },
        }

    def close(self) -> None:
        """Release the engine. A decision still in flight on this pack finishes on the interpreter."""
        self._closed = True
        if self._durable is not None:
            self._durable.close()
            self._durable = None

    # -- public -------------------------------------------------------------------------------------
    def decide(self, complaint: Complaint, *, now: datetime | None = None) -> Decision:
        outcome, present = self._outcome(complaint)
        rule_words = self.compiled.rule_words
        matched = (
            tuple(tuple(w for w in rule_words.get(t.rule, ()) if w in present) for t in outcome.trace)
            if present
            else ()
        )
        within = outcome.within
        return Decision(
            complaint_id=complaint.id,
            decision_id=uuid.uuid4().hex,
            received_at=complaint.received_at,
            existing_case_id=complaint.existing_case_id,
            outcome=outcome,
            deadlines=deadlines_for(complaint.received_at, within),
            decided_at=now or datetime.now(UTC),
            matched_keywords=matched if any(matched) else (),
        )

    def outcome(self, complaint: Complaint) -> Outcome:
        return self._outcome(complaint)[0]

    def _outcome(self, complaint: Complaint) -> tuple[Outcome, frozenset[str]]:
        values, present, hint_ignored = self.compiled.features(complaint)
        self.compiled.keyword_features(values, present)
        if not self._memoize:
            return self._evaluate(values, present, hint_ignored), present
        key = self.compiled.class_key(values, present, hint_ignored)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return hit, present
            self.cache_misses += 1
        outcome = self._evaluate(values, present, hint_ignored)
        with self._cache_lock:
            self._cache[key] = outcome
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return outcome, present

    # -- evaluation ---------------------------------------------------------------------------------
    def _evaluate(self, values: dict[str, Any], present: frozenset[str], hint_ignored: bool) -> Outcome:
        if self._durable is not None:
            durable = self._durable
            try:
                with contextlib.ExitStack() as stack:
                    session: _durable.Session | None = None

                    def match(
                        plan: StagePlan, fact: dict[str, Any], key: tuple[Any, ...] | None
                    ) -> list[Rule]:
                        nonlocal session
                        if key is not None:
                            hit = self._stage_cache.get(key)
                            if hit is not None:
                                self.stage_hits += 1
                                return list(hit)
                        if session is None:  # the engine is entered only for a class it has not seen
                            session = stack.enter_context(durable.session())
                        fired = durable.matches_in(session, fact)
                        if key is not None:
                            self.stage_misses += 1
                            if len(self._stage_cache) >= self._stage_cache_size:
                                self._stage_cache.clear()
                            self._stage_cache[key] = tuple(fired)
                        return fired

                    return self._pipeline(values, present, hint_ignored, match)
            except _durable.EngineFailure as e:
                if self._closed:  # swapped out by a reload while this decision was waiting
                    return self._pipeline(values, present, hint_ignored, self._python.matches)
                # The engine failed on a valid complaint (a known engine bug). Answer from the plain
                # interpretation, which the differential test holds equal, and rebuild the engine.
                self.fallbacks += 1
                log.error(
                    "engine failure; decided by the plain interpreter",
                    extra={"event": "engine_fallback", "reason": str(e)},
                )
                try:
                    old = self._durable
                    self._durable = DurableMatcher(self.compiled)
                    if old is not None:
                        old.close()
                except Exception:  # pragma: no cover - rebuild failure leaves the interpreter serving
                    log.exception("engine rebuild failed", extra={"event": "engine_rebuild_failed"})
                    self._durable = None
        return self._pipeline(values, present, hint_ignored, self._python.matches)

    @staticmethod
    def _fact(plan: StagePlan, raw: list[Any], feats: list[Any]) -> dict[str, Any]:
        fact: dict[str, Any] = {_durable.STEP_FIELD: plan.name}
        for (_name, fname), v in zip(plan.fact_names, raw, strict=True):
            fact[fname] = v
        for feat, v in zip(plan.features, feats, strict=True):
            fact[feat] = v
        return fact

    def _pipeline(
        self, values: dict[str, Any], present: frozenset[str], hint_ignored: bool, match: Any
    ) -> Outcome:
        # One environment: the complaint's values (fields and keyword booleans) and the decision's fields,
        # whose names never collide. Stages read it and write decision fields into it.
        slots: dict[str, Any] = dict(values)
        slots.update(self.pack.defaults)
        set_by: dict[str, str] = {}
        trace: list[TraceEntry] = []
        guidance_rules: list[Rule] = []
        notes: list[str] = []
        if hint_ignored:
            notes.append(
                "category_hint is not a category code or name; it was ignored and the keywords decided"
            )
        memo = self._memoize
        for plan in self.compiled.stages:
            if not plan.rules:
                continue
            raw = [get(slots) for get in self._readers[plan.index]]
            feats = [slots[feat] for feat in plan.features]
            if memo:
                # A stage's transition depends only on its fact's class and the values its `then` reads.
                skey = (
                    plan.index,
                    *[
                        v if fn is None else fn(v)
                        for v, fn in zip(raw, self._stage_abstractors[plan.index], strict=True)
                    ],
                    *feats,
                )
                tkey = (skey, *[slots.get(n) for n in self._then_reads[plan.index]])
                step = self._transitions.get(tkey)
                if step is not None:
                    self.stage_hits += 1
                else:
                    fact = self._fact(plan, raw, feats)
                    step = self._transition(plan, match(plan, fact, skey), slots)
                    if len(self._transitions) >= self._stage_cache_size:
                        self._transitions.clear()
                    self._transitions[tkey] = step
            else:
                fact = self._fact(plan, raw, feats)
                step = self._transition(plan, match(plan, fact, None), slots)
            for slot, v, rule_id in step.updates:
                slots[slot] = v
                set_by[slot] = rule_id
            trace.extend(step.trace)
            guidance_rules.extend(step.guidance)
        if "category" not in set_by:
            notes.append(
                f"no rule classified the complaint: category {slots['category']}, for a person to triage"
            )
        category = str(slots["category"])
        excluded = bool(slots["excluded"])
        stage = str(slots["stage"])
        if excluded:
            path: tuple[str, ...] = ()
        else:
            later = STAGES[STAGES.index(stage) + 1 :] if stage in STAGES else ()
            path = tuple(s for s in later if s != "ARBITRATE" or self._arbitrable.get(category, False))
        within = {F.DEADLINE_SLOTS[s]: int(slots[s]) for s in F.DEADLINE_SLOTS if slots.get(s) is not None}
        approach = str(slots["approach"])
        return Outcome(
            category=category,
            excluded=excluded,
            exclusion=str(slots["exclusion"]) if excluded else "",
            referred_to=str(slots["referred_to"]) if excluded else "",
            color=str(slots["color"]),
            tier=str(slots["tier"]),
            approach="" if approach == "NONE" else approach,
            owner_department=str(slots["owner_department"]),
            co_departments=tuple(slots["co_departments"] or ()),
            stage=stage,
            path=path,
            statutory_route=str(slots["statutory_route"] or ""),
            within=within,
            guidance="".join(self._render(r.guidance, slots) for r in guidance_rules),
            trace=tuple(trace),
            notes=tuple(notes),
            pack=self.id,
        )

    def _transition(self, plan: StagePlan, fired: list[Rule], slots: dict[str, Any]) -> _Transition:
        """Resolve the rules a stage matched: who sets what, who lost to whom, who speaks."""
        fired = sorted(fired, key=lambda r: (-r.priority, r.order))
        winners: dict[str, tuple[Rule, Any]] = {}
        losers: dict[str, dict[str, str]] = {}
        rows_read: dict[str, list[str]] = {}
        for rule in fired:
            for slot, expr in rule.then.items():
                v = self._value(slot, expr, slots, rows_read.setdefault(rule.id, []))
                if v is _SKIP:
                    continue
                prev = winners.get(slot)
                if prev is None:
                    winners[slot] = (rule, v)
                elif F.RESOLUTION[slot] == "highest" and _COLOR_RANK[v] > _COLOR_RANK[prev[1]]:
                    losers.setdefault(prev[0].id, {})[slot] = rule.id
                    winners[slot] = (rule, v)
                else:
                    losers.setdefault(rule.id, {})[slot] = prev[0].id
        won: dict[str, dict[str, Any]] = {}
        for slot, (rule, v) in winners.items():
            won.setdefault(rule.id, {})[slot] = v
        trace: list[TraceEntry] = []
        speaking: list[Rule] = []
        for rule in fired:
            mine = won.get(rule.id, {})
            lost = losers.get(rule.id, {})
            # A rule that lost every field it set has not changed the decision: it gets no say in
            # the guidance either. A rule that sets nothing but speaks (guidance only) always does.
            if rule.guidance and (mine or not rule.then):
                speaking.append(rule)
            trace.append(
                TraceEntry(
                    rule=rule.id,
                    stage=rule.stage,
                    layer=rule.layer,
                    file=rule.source or rule.file,
                    line=rule.line,
                    priority=rule.priority,
                    set={k: _show(k, v) for k, v in mine.items()},
                    overruled={k: lost[k] for k in sorted(lost)},
                    table_rows=tuple(dict.fromkeys(rows_read.get(rule.id, ()))),
                )
            )
        updates = tuple((slot, v, rule.id) for slot, (rule, v) in winners.items())
        return _Transition(updates, tuple(trace), tuple(speaking))

    def _reader(self, name: str) -> Callable[[dict[str, Any]], Any]:
        """How a stage reads a tested field from the environment (a table column: from the current row)."""
        if name in F.COMPLAINT_FIELDS or name in F.DECISION_FIELDS:
            return operator.itemgetter(name)
        tname, _, col = name.partition(".")
        table = self.pack.tables[tname]
        key = table.key
        rows = table.rows
        sample = next((r[col] for r in rows.values() if r.get(col) is not None), "")
        default: Any = False if isinstance(sample, bool) else 0 if isinstance(sample, int | float) else ""

        def read(env: dict[str, Any]) -> Any:
            row = rows.get(str(env.get(key, "")))
            v = row.get(col) if row is not None else None
            return default if v is None else v

        return read

    def _value(self, slot: str, expr: Value, slots: dict[str, Any], rows: list[str]) -> Any:
        if expr.kind == "literal":
            return expr.literal
        if expr.kind == "copy":
            v = slots.get(expr.source)
            return _SKIP if v in (None, "", "UNSPECIFIED") else v
        table = self.pack.tables[expr.table]
        key = str(slots.get(table.key, ""))
        row = table.rows.get(key)
        if row is None:
            return _SKIP
        rows.append(f"{expr.table}.{key}")
        v = row.get(expr.column)
        ftype = F.DECISION_FIELDS[slot]
        if ftype.kind == "codes":
            return tuple(dict.fromkeys([*(v or ()), *expr.add]))
        if ftype.kind == "duration":
            return F.parse_duration(v)
        return _SKIP if v is None else v

    def _render(self, template: str, slots: dict[str, Any]) -> str:
        names = self._names
        return template.format(
            category=names["category"].get(slots["category"], slots["category"]),
            owner_department=names["department"].get(slots["owner_department"], slots["owner_department"]),
            referred_to=names["department"].get(slots["referred_to"], slots["referred_to"]),
            exclusion=names["exclusion"].get(slots["exclusion"], slots["exclusion"]),
            tier=F.TIER_NAMES_ZH.get(slots["tier"], slots["tier"]),
            stage=F.STAGE_NAMES_ZH.get(slots["stage"], slots["stage"]),
            color=F.COLOR_NAMES_ZH.get(slots["color"], slots["color"]),
            approach=F.APPROACH_NAMES_ZH.get(slots["approach"], slots["approach"]),
        )


def _show(slot: str, v: Any) -> Any:
    if F.DECISION_FIELDS[slot].kind == "duration":
        return F.format_duration(v)
    if isinstance(v, tuple):
        return list(v)
    return v
