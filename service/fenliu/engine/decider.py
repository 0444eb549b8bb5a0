"""Evaluate a compiled pack on a complaint: stages in order, conflicts resolved, a full trace.

For each stage, in the pack's order:

1. a fact is built from the complaint's features and the decision fields set so far;
2. the matcher returns the stage's rules whose ``when`` holds — the durable_rules engine
   (``DurableMatcher``) or the plain Python interpretation (``PythonMatcher``), behind the
   :class:`~fenliu.engine.matchers.Matcher` protocol, which must
   agree on every complaint (the differential test checks it);
3. matched rules are ordered by priority (higher first), then by their position in the pack;
4. for each decision field, the first rule in that order that sets it wins — except ``color``, where
   the highest colour wins. ``then`` values are computed from the decision as it stood *before* the stage;
5. winners are applied; every matched rule goes into the trace with what it set and what it lost, and to
   which rule.

An :class:`Outcome` depends only on the complaint's class of input (see :mod:`fenliu.compiling.compiler`), and
what a stage does only on the class of that stage's input and the decision so far, so a
:class:`Decider` remembers decisions as a graph of decision states walked one stage at a time (see
:class:`_Node`). The engine lock is held only while the engine runs.
"""

from __future__ import annotations

import enum
import functools
import logging
import operator
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, TypeAlias

from fenliu.compiling.compiler import ClassKey, Fact, FactValue, StageKey, StagePlan, compile_pack
from fenliu.domain import fields as F
from fenliu.domain.errors import MatcherFailure, PackError
from fenliu.domain.model import STAGES, Complaint, Decision, Outcome, PackId, TraceEntry, deadlines_for
from fenliu.engine import memo as memo_bounds
from fenliu.engine.enrich import Enricher, enrichment_for
from fenliu.engine.matchers import Matcher, MatchFn, PythonMatcher, matcher_for, problems
from fenliu.engine.memo import Memories, Node, Slots, keep
from fenliu.engine.resolution import replaces
from fenliu.packs.types import Pack, Rule, Value

log = logging.getLogger("fenliu.engine")

_Node = Node  # the memo's graph node (fenliu.engine.memo)


class _Skip(enum.Enum):
    """What a `then` value computes to when it sets nothing (a copy of an unset field, a missing row)."""

    SKIP = 0


_SKIP: Final = _Skip.SKIP


class _Transition:
    """What one stage did to a decision: (field, value, rule) updates, the rules that speak, and the
    rules that fired (in resolution order), whose trace entries are worked out when first asked for.

    Compared by identity: equal transitions are kept once (``Memories.same``, by signature), so one
    object stands for its signature, and hashing it does not walk the signature.
    """

    __slots__ = ("__weakref__", "_explain", "_trace", "fired", "guidance", "sig", "updates")

    def __init__(
        self,
        updates: tuple[tuple[str, FactValue, str], ...],
        guidance: tuple[Rule, ...],
        sig: tuple[Hashable, ...],  # what it does, comparable: equal signatures, equal transitions
        fired: tuple[Rule, ...] = (),
        explain: Callable[[], tuple[TraceEntry, ...]] | None = None,
    ) -> None:
        self.updates = updates
        self.guidance = guidance
        self.sig = sig
        self.fired = fired
        self._trace: tuple[TraceEntry, ...] | None = None if explain is not None else ()
        self._explain = explain

    @property
    def trace(self) -> tuple[TraceEntry, ...]:
        """One entry per fired rule: what it set, what overruled it, the table rows it read."""
        trace = self._trace
        if trace is None:
            explain = self._explain
            if explain is None:  # another thread has just worked it out
                return self._trace or ()
            trace = self._trace = explain()
            self._explain = None
        return trace


class _Explained:
    """An outcome's :class:`~fenliu.domain.model.Explanation`, from the transitions its walk took."""

    __slots__ = ("_fired", "_rule_words", "_steps", "_trace", "_words")

    def __init__(self, steps: tuple[_Transition, ...], rule_words: dict[str, tuple[str, ...]]) -> None:
        self._steps = steps
        self._rule_words = rule_words
        self._trace: tuple[TraceEntry, ...] | None = None
        self._fired: tuple[tuple[str, str], ...] | None = None
        self._words: tuple[tuple[int, tuple[str, ...]], ...] | None = None

    def trace(self) -> tuple[TraceEntry, ...]:
        if self._trace is None:
            self._trace = tuple(entry for st in self._steps for entry in st.trace)
        return self._trace

    def rules_fired(self) -> tuple[tuple[str, str], ...]:
        if self._fired is None:
            self._fired = tuple((r.id, r.layer) for st in self._steps for r in st.fired)
        return self._fired

    def keyword_rules(self) -> tuple[tuple[int, tuple[str, ...]], ...]:
        if self._words is None:
            words = self._rule_words
            self._words = tuple(
                (i, words[rule]) for i, (rule, _layer) in enumerate(self.rules_fired()) if rule in words
            )
        return self._words


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


#: (per field the winning rule and value, per rule what it lost to whom, per rule the table rows it
#: read, the values `then` computed with their rows)
_Resolution: TypeAlias = tuple[
    dict[str, tuple[Rule, FactValue]],
    dict[str, dict[str, str]],
    dict[str, list[str]],
    list[tuple[Hashable, ...]],
]
#: What a rule did in a stage: (its id, what it set, what it lost to whom, the table rows it read).
_Part: TypeAlias = tuple[str, tuple[tuple[str, FactValue], ...], tuple[tuple[str, str], ...], tuple[str, ...]]


class _Explainer:
    """What a decider's transitions need to compute `then` values and work out their trace entries
    later: the pack's tables and the trace entries made so far. It holds no reference to the decider,
    so the memories that hold transitions make no reference cycle with it, and a replaced pack's
    decider is freed as soon as it is dropped (the tuned collector seldom looks for cycles)."""

    __slots__ = ("bound", "entries", "lock", "tables")

    def __init__(self, pack: Pack, memories: Memories) -> None:
        self.tables = pack.tables
        # what a rule did in a stage -> its trace entry (shared by the transitions where it did that):
        # the memories' own, written under their lock (but not the memories, which hold transitions
        # that hold this explainer)
        self.entries = memories.entries
        self.lock = memories.lock
        self.bound = memories.stage_size

    def value(self, slot: str, expr: Value, slots: Fact, rows: list[str]) -> FactValue | _Skip:
        """A computed `then` value (a copy or a table lookup; literals need no computing), or
        ``_SKIP``; the table rows it read are appended to ``rows``."""
        if expr.kind == "copy":
            v = slots.get(expr.source)
            return _SKIP if v in (None, "", "UNSPECIFIED") else v
        table = self.tables[expr.table]
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

    def resolve(self, ranked: tuple[Rule, ...], slots: Fact, *, losers_too: bool) -> _Resolution:
        """Resolve the rules a stage matched, in resolution order: per field the rule that sets it and
        its value, per rule the fields it lost and to whom (only ``losers_too``: a trace needs them, a
        decision does not), the table rows each rule read, and the values that `then` computed (with
        the rows each read)."""
        winners: dict[str, tuple[Rule, FactValue]] = {}
        losers: dict[str, dict[str, str]] = {}
        rows_read: dict[str, list[str]] = {}
        computed: list[tuple[Hashable, ...]] = []
        for rule in ranked:
            for slot, expr in rule.then.items():
                if expr.kind == "literal":
                    v = expr.literal
                else:
                    rows = rows_read.setdefault(rule.id, [])
                    start = len(rows)
                    v = self.value(slot, expr, slots, rows)
                    computed.append((v, *rows[start:]))
                    if v is _SKIP:
                        continue
                prev = winners.get(slot)
                if prev is None:
                    winners[slot] = (rule, v)
                elif replaces(slot, v, prev[1]):
                    if losers_too:
                        losers.setdefault(prev[0].id, {})[slot] = rule.id
                    winners[slot] = (rule, v)
                elif losers_too:
                    losers.setdefault(rule.id, {})[slot] = prev[0].id
        return winners, losers, rows_read, computed

    def explain(self, ranked: tuple[Rule, ...], slots: Fact) -> tuple[TraceEntry, ...]:
        """The trace entries of a transition: per fired rule (in resolution order) what it set, what
        it lost to whom, which table rows it read."""
        winners, losers, rows_read, _computed = self.resolve(ranked, slots, losers_too=True)
        won: dict[str, dict[str, FactValue]] = {}
        for slot, (rule, v) in winners.items():
            won.setdefault(rule.id, {})[slot] = v
        # Entries are shared between transitions (the same rule doing the same thing elsewhere).
        entries = self.entries
        trace: list[TraceEntry] = []
        for r in ranked:
            part = (
                r.id,
                tuple(won[r.id].items()) if r.id in won else (),
                tuple(sorted(losers[r.id].items())) if r.id in losers else (),
                tuple(dict.fromkeys(rows_read[r.id])) if r.id in rows_read else (),
            )
            entry = entries.get(part)
            if entry is None:
                with self.lock:
                    entry = keep(entries, part, _trace_entry(r, part), self.bound)
            trace.append(entry)
        return tuple(trace)


class Decider:
    """A prepared pack: compile once, decide many times. Thread-safe: one Decider may serve many
    threads (what it remembers is a :class:`~fenliu.engine.memo.Memories`, which says how).

    With ``memoize`` (the default), decisions walk a graph of remembered :class:`_Node` states; a stage
    is evaluated (by the engine, or from the per-stage memories below) only where the walk meets a class
    of input not seen before. ``cache_size`` bounds the graph's nodes and edges; past it the graph
    starts afresh, rebuilt from the memory of what each stage does per class of its input (bounded on
    its own, at a third of ``cache_size``). ``stage_hits`` counts stages answered from memory,
    ``stage_misses`` stages the matcher evaluated (durable_rules, or the interpreter when it decides);
    ``cache_hits`` counts decisions answered entirely from memory, ``cache_misses`` the rest.
    """

    def __init__(
        self,
        pack: Pack,
        *,
        backend: str = "durable",
        memoize: bool = True,
        cache_size: int = memo_bounds.GRAPH_NODES,
        text_model: bool = True,
        enrichers: Sequence[Enricher] = (),
    ) -> None:
        self.pack = pack
        refused = memo_bounds.refusals(pack)  # what the memo cannot class, whatever the backend
        if refused:
            raise PackError(refused)
        self.compiled = compile_pack(pack)
        unrunnable = problems(self.compiled)  # what some backend cannot run (its limits)
        if unrunnable:
            raise PackError(unrunnable)
        # Between validation and the engine: what the pack's lexicon and model read in the text, then
        # ``enrichers`` (each adds derived complaint fields, which enter the class key).
        self.enrichment = enrichment_for(pack, model=text_model, extra=enrichers)
        self.backend = backend
        self.id = PackId(pack.name, pack.revision, pack.digest)
        self._python = PythonMatcher(self.compiled)
        #: What matches a stage's rules (:mod:`fenliu.engine.matchers`); the plain interpreter when it is
        #: ``backend``, and after a failure until the matcher is rebuilt.
        self.matcher: Matcher = self._python if backend == "python" else matcher_for(backend, self.compiled)
        self._memoize = memoize
        self._closed = False
        self._plans = [plan for plan in self.compiled.stages if plan.rules]
        self._slot_names: tuple[str, ...] = tuple(dict.fromkeys([*F.DECISION_FIELDS, *pack.defaults]))
        self._slot_index = {name: i for i, name in enumerate(self._slot_names)}
        self._then_reads = [_then_reads(plan, pack) for plan in self.compiled.stages]
        # Per stage, how the class of its input is read from the complaint's class key.
        self._projections = [
            self.compiled.projection([*plan.fields, *self._then_reads[plan.index], *plan.features])
            for plan in self._plans
        ]
        # Per stage, the decision fields it reads: tested, copied, or the keys of the table columns it
        # tests and the tables it looks up.
        self._slot_reads = [self._slot_reader(plan) for plan in self._plans]
        self._cache_size = max(1, cache_size)
        defaults = pack.defaults
        #: Every memory this decider keeps, with its bound and its lock.
        self.memories = Memories(
            len(self._plans), tuple(_hashable(defaults.get(name)) for name in self._slot_names), cache_size
        )
        self._rule_bit = {r.id: 1 << i for plan in self.compiled.stages for i, r in enumerate(plan.rules)}
        self._explainer = _Explainer(pack, self.memories)
        self.stage_hits = 0
        self.stage_misses = 0
        self._readers = [[self._reader(name) for name in plan.fields] for plan in self.compiled.stages]
        self._features = [
            self.compiled.feature_reader(plan.features, plan.negated) for plan in self.compiled.stages
        ]
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
        if self.matcher is not self._python:
            self.matcher.close()
            self.matcher = self._python

    @property
    def memory_nodes(self) -> int:
        """How many decision states the memo graph holds now."""
        return self.memories.nodes

    @property
    def _roots(self) -> dict[bool, Node]:
        return self.memories.roots

    def _slot_reader(self, plan: StagePlan) -> Callable[[Slots], Hashable]:
        names: set[str] = set()
        for name in [*plan.fields, *self._then_reads[plan.index]]:
            if name in self._slot_index:
                names.add(name)
            elif "." in name and name.partition(".")[0] in self.pack.tables:
                names.add(self.pack.tables[name.partition(".")[0]].key)
        idx = sorted(self._slot_index[n] for n in names)
        if not idx:
            return lambda slots: ()
        return operator.itemgetter(*idx)

    # -- public -------------------------------------------------------------------------------------
    def decide(self, complaint: Complaint, *, now: datetime | None = None) -> Decision:
        if self.enrichment and not complaint.enriched:
            complaint = self.enrichment(complaint)
        outcome, present = self._outcome(complaint)
        # Which of its keywords each rule found belongs to the complaint, not the shared outcome.
        return Decision(
            complaint_id=complaint.id,
            decision_id=_decision_id(),
            received_at=complaint.received_at,
            existing_case_id=complaint.existing_case_id,
            outcome=outcome,
            deadlines=deadlines_for(complaint.received_at, outcome.within),
            decided_at=now or datetime.now(UTC),
            keywords_present=present,
            evidence=complaint.evidence,
            personal_notes=complaint.complainant.notes(),
        )

    def outcome(self, complaint: Complaint) -> Outcome:
        if self.enrichment and not complaint.enriched:
            complaint = self.enrichment(complaint)
        return self._outcome(complaint)[0]

    def _outcome(self, complaint: Complaint) -> tuple[Outcome, frozenset[str]]:
        key, present = self.compiled.read(complaint)
        hint_ignored = bool(key[1])
        if not self._memoize:
            node, steps = self._evaluate(complaint, key, memo=False)
            return self._finish(node, steps, hint_ignored), present
        memories = self.memories
        walked = self._lookup(key, hint_ignored)  # reads only: no lock (see Memories)
        if walked is None:
            with memories.lock:  # every write to the memories is made under it
                self.cache_misses += 1
                walked = self._evaluate(complaint, key, memo=True)
        else:
            self.cache_hits += 1
        node, steps = walked
        # The transitions taken (and the hint) make the outcome: its trace and guidance are theirs.
        okey = (hint_ignored, steps)
        known = memories.outcomes.get(okey)
        if known is None:
            with memories.lock:
                known = memories.outcomes.get(okey)
                if known is None:  # the first decision to take this path
                    known = keep(
                        memories.outcomes,
                        okey,
                        self._finish(node, steps, hint_ignored),
                        memories.outcomes_size,
                    )
        return known, present

    def _lookup(self, key: ClassKey, hint_ignored: bool) -> tuple[_Node, tuple[_Transition, ...]] | None:
        """The last node and the transitions taken, if every stage's class of input has been seen on
        the way: no engine, no facts."""
        node = self.memories.roots[hint_ignored]
        taken = []
        for project in self._projections:
            edge = node.edges.get(project(key))
            if edge is None:
                return None
            taken.append(edge[0])
            node = edge[1]
        self.stage_hits += len(self._projections)
        return node, tuple(taken)

    # -- evaluation ---------------------------------------------------------------------------------
    def _evaluate(
        self, complaint: Complaint, key: ClassKey, *, memo: bool
    ) -> tuple[_Node, tuple[_Transition, ...]]:
        matcher = self.matcher
        if matcher is not self._python:
            try:
                with matcher.deciding() as match:
                    return self._walk(complaint, key, match, memo)
            except MatcherFailure as e:
                if self._closed:  # swapped out by a reload while this decision was waiting
                    return self._walk(complaint, key, self._python.matches, memo)
                # The matcher failed on a valid complaint (a known engine bug). Answer from the plain
                # interpretation, which the differential test holds equal, and rebuild the matcher.
                self.fallbacks += 1
                log.error(
                    "engine failure; decided by the plain interpreter",
                    extra={"event": "engine_fallback", "reason": str(e)},
                )
                with self.memories.lock:  # one rebuild, whichever threads failed on the old matcher
                    if self.matcher is matcher:
                        try:
                            self.matcher = matcher_for(self.backend, self.compiled)
                            if matcher is not self.matcher:
                                matcher.close()
                        except Exception:  # pragma: no cover - rebuild failure leaves the interpreter serving
                            log.exception("engine rebuild failed", extra={"event": "engine_rebuild_failed"})
                            self.matcher = self._python
        return self._walk(complaint, key, self._python.matches, memo)

    def _walk(
        self, complaint: Complaint, key: ClassKey, match: MatchFn, memo: bool
    ) -> tuple[_Node, tuple[_Transition, ...]]:
        """From the root through every stage; memoized, along remembered edges where they exist.
        The last node, and the transitions taken."""
        memories = self.memories
        node = memories.roots[bool(key[1])]
        taken: list[_Transition] = []
        if not memo:  # every stage is evaluated and nothing is remembered: one environment throughout
            values = self.compiled.values(complaint, key)
            values.update(zip(self._slot_names, node.slots, strict=True))
            classified = False
            for plan in self._plans:
                done = self._step(plan, values, key, match, memo=False)
                for slot, v, _rule_id in done.updates:
                    values[slot] = v
                    classified = classified or slot == "category"
                taken.append(done)
            return _Node(tuple(values[n] for n in self._slot_names), classified), tuple(taken)
        env: Fact | None = None
        for depth, (plan, project, reads, steps) in enumerate(
            zip(self._plans, self._projections, self._slot_reads, memories.steps, strict=True)
        ):
            cls = project(key)
            edge = node.edges.get(cls)
            if edge is None:
                # What the stage does depends on the class of its input and the decision fields it
                # reads, not on the rest of the node (its trace): ask that memory first.
                cls = memories.labels.setdefault(cls, cls)  # many nodes see the same classes: one key object
                skey = (reads(node.slots), cls)
                step = steps.get(skey)
                if step is None:
                    if env is None:
                        env = self.compiled.values(complaint, key)
                    env.update(zip(self._slot_names, node.slots, strict=True))
                    # outlives the graph, bounded on its own
                    step = memories.keep_step(depth, skey, self._step(plan, env, key, match, memo=True))
                else:
                    self.stage_hits += 1
                # Paths that reach the same decision fields meet again.
                nxt = node.children.get(step)
                if nxt is None:
                    nxt = node.children[step] = self._apply(node, step, depth)
                edge = node.edges[cls] = (step, nxt)
                if memories.added():
                    memories.new_graph()  # walks in flight finish on the old graph
            else:
                self.stage_hits += 1
            taken.append(edge[0])
            node = edge[1]
        return node, tuple(taken)

    def _recall_parts(
        self, plan: StagePlan, split: list[tuple[StageKey, int]], sure: int
    ) -> list[Rule] | None:
        """The rules the parts of a stage's candidates match, and those sure to fire, if every part's
        class is remembered."""
        if not split and not sure:
            return None
        memo = self.memories.part_memo
        fired_bits = sure
        for pkey, _sub in split:
            got = memo.get(pkey)
            if got is None:
                return None
            fired_bits |= got
        return _rules_of(plan, fired_bits)

    def _learn_parts(self, split: list[tuple[StageKey, int]], fired: list[Rule]) -> None:
        """Remember, for each part of the candidates, which of its rules matched."""
        if not split:
            return
        bit = self._rule_bit
        fired_bits = 0
        for r in fired:
            fired_bits |= bit[r.id]
        self.memories.keep_parts(split, fired_bits)

    def _fact(self, plan: StagePlan, raw: list[FactValue], key: ClassKey) -> Fact:
        fact: Fact = {}
        for (_name, fname), v in zip(plan.fact_names, raw, strict=True):
            fact[fname] = v
        # Keyword groups and patterns: the true ones, and false ones only where a rule needs them false.
        self._features[plan.index](key, fact)
        return fact

    def _step(self, plan: StagePlan, env: Fact, key: ClassKey, match: MatchFn, *, memo: bool) -> _Transition:
        """What ``plan`` does in ``env``: the complaint's values and the decision's fields as they stand
        before the stage (their names never collide)."""
        raw = [get(env) for get in self._readers[plan.index]]
        if not memo:
            return self._transition(plan, match(plan, self._fact(plan, raw, key)), env, memo=False)
        # A stage's transition depends only on the class of what it matches (its candidate rules and
        # what they read, see CompiledPack.match_key) and the values its `then` reads.
        classes = [v if fn is None else fn(v) for v, fn in zip(raw, plan.abstractors, strict=True)]
        skey = (plan.index, *plan.match_key(raw, classes, key))  # type: ignore[misc]
        tkey = (skey, *[env.get(n) for n in self._then_reads[plan.index]])
        memories = self.memories
        step = memories.transitions.get(tkey)
        if step is not None:
            self.stage_hits += 1
            return step
        known = memories.stage_cache.get(skey)
        if known is not None:
            self.stage_hits += 1
            fired = list(known)
        else:
            # A class not seen whole may be seen part by part: rules that read nothing in common
            # match independently (CompiledPack.match_key). The fact is built only for the matcher.
            split, sure = plan.match_parts(skey[1], classes, key)  # type: ignore[misc]
            recalled = self._recall_parts(plan, split, sure)
            if recalled is not None:
                self.stage_hits += 1
                fired = recalled
            else:
                fired = match(plan, self._fact(plan, raw, key))
                self.stage_misses += 1
                self._learn_parts(split, fired)
            keep(memories.stage_cache, skey, tuple(fired), memories.stage_size)
        # Many classes of input fire the same rules, and what the stage does depends only on those and
        # the values its `then` reads: resolve each such set once.
        fkey = (plan.index, *sorted([r.order for r in fired]), *tkey[1:])
        step = memories.resolved.get(fkey)
        if step is None:
            step = memories.keep_resolved(fkey, self._transition(plan, fired, env))
        return keep(memories.transitions, tkey, step, memories.stage_size)

    def _apply(self, node: _Node, step: _Transition, depth: int) -> _Node:
        """The node ``step`` leads to from ``node`` (the stage at ``depth``): one per decision fields."""
        if not step.updates:
            slots, classified = node.slots, node.classified
        else:
            values = list(node.slots)
            classified = node.classified
            index = self._slot_index
            for slot, v, _rule_id in step.updates:
                values[index[slot]] = v
                classified = classified or slot == "category"
            slots = tuple(values)
        memories = self.memories
        interned = memories.interned[depth]
        ikey = (slots, classified)
        try:
            nxt = interned.get(ikey)
        except TypeError:  # a value that cannot be a key (none can today): a node of its own
            nxt = _Node(slots, classified)
            memories.added()
            return nxt
        if nxt is None:
            nxt = interned[ikey] = _Node(slots, classified)
            memories.added()
        return nxt

    def _finish(self, node: _Node, steps: tuple[_Transition, ...], hint_ignored: bool) -> Outcome:
        """The outcome at the last node, reached by ``steps``."""
        slots = dict(zip(self._slot_names, node.slots, strict=True))
        notes: list[str] = []
        if hint_ignored:
            notes.append(
                "category_hint is not a category code or name; it was ignored and the keywords decided"
            )
        if not node.classified:
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
        within = {
            F.DEADLINE_SLOTS[s]: _seconds(slots[s]) for s in F.DEADLINE_SLOTS if slots.get(s) is not None
        }
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
            co_departments=_codes(slots["co_departments"]),
            stage=stage,
            path=path,
            statutory_route=str(slots["statutory_route"] or ""),
            within=within,
            guidance="".join(self._render(r.guidance, slots) for st in steps for r in st.guidance),
            notes=tuple(notes),
            pack=self.id,
            explanation=_Explained(steps, self.compiled.rule_words),
        )

    def _transition(
        self, plan: StagePlan, fired: list[Rule], slots: Fact, *, memo: bool = True
    ) -> _Transition:
        """What a stage does with the rules it matched: who sets what, who speaks. The trace entries
        are worked out when the trace is first asked for (:meth:`_Explainer.explain`)."""
        ranked = tuple(sorted(fired, key=_rank))
        winners, _losers, _rows, computed = self._explainer.resolve(ranked, slots, losers_too=False)
        won = {rule.id for rule, _v in winners.values()}
        # A rule that lost every field it set has not changed the decision: it gets no say in the
        # guidance either. A rule that sets nothing but speaks (guidance only) always does.
        speaking = tuple(r for r in ranked if r.guidance and (r.id in won or not r.then))
        updates = tuple((slot, v, rule.id) for slot, (rule, v) in winners.items())
        # The rules, in order, and what `then` computed fix everything the stage does, trace included.
        sig = (plan.index, tuple([r.order for r in ranked]), tuple(computed))
        if memo:
            known = self.memories.same.get(sig)
            if known is not None:  # the same transition, reached from another class
                return known
        reads = {name: slots.get(name) for name in self._then_reads[plan.index]}
        return _Transition(
            updates, speaking, sig, ranked, functools.partial(self._explainer.explain, ranked, reads)
        )

    def _reader(self, name: str) -> Callable[[Fact], FactValue]:
        """How a stage reads a tested field from the environment (a table column: from the current row)."""
        if name in F.COMPLAINT_FIELDS or name in F.DECISION_FIELDS:
            return operator.itemgetter(name)
        tname, _, col = name.partition(".")
        table = self.pack.tables[tname]
        key = table.key
        rows = table.rows
        sample = next((r[col] for r in rows.values() if r.get(col) is not None), "")
        default: FactValue = (
            False if isinstance(sample, bool) else 0 if isinstance(sample, int | float) else ""
        )

        def read(env: Fact) -> FactValue:
            row = rows.get(str(env.get(key, "")))
            v = row.get(col) if row is not None else None
            return default if v is None else v

        return read

    def _render(self, template: str, slots: Fact) -> str:
        names = self._names
        return template.format(
            category=_named(names["category"], slots["category"]),
            owner_department=_named(names["department"], slots["owner_department"]),
            referred_to=_named(names["department"], slots["referred_to"]),
            exclusion=_named(names["exclusion"], slots["exclusion"]),
            tier=_named(F.TIER_NAMES_ZH, slots["tier"]),
            stage=_named(F.STAGE_NAMES_ZH, slots["stage"]),
            color=_named(F.COLOR_NAMES_ZH, slots["color"]),
            approach=_named(F.APPROACH_NAMES_ZH, slots["approach"]),
        )


def _decision_id() -> str:
    """A random UUID (version 4) as 32 hex digits, from the system's randomness each time: no stream
    is kept in the process (and none is shared with a forked child). Decision ids identify; they guard
    nothing."""
    return uuid.uuid4().hex


def _trace_entry(rule: Rule, part: _Part) -> TraceEntry:
    """A fired rule's trace entry from what it did: (id, what it set, what it lost to whom, rows read)."""
    rule_id, won, lost, rows = part
    return TraceEntry(
        rule=rule_id,
        stage=rule.stage,
        layer=rule.layer,
        file=rule.source or rule.file,
        line=rule.line,
        priority=rule.priority,
        set={k: _show(k, v) for k, v in won},
        overruled=dict(lost),
        table_rows=rows,
    )


def _hashable(v: object) -> FactValue:
    """A default as a decision field holds it: lists as tuples (nodes are found by their fields). The
    pack's loader has checked each default against its field's type."""
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v)
    if v is None or isinstance(v, str | int | float | bool):
        return v
    raise TypeError(f"a default of type {type(v).__name__}")


def _seconds(v: FactValue) -> int:
    """A duration as a decision field holds it."""
    if isinstance(v, int | float | str):
        return int(v)
    raise TypeError(type(v).__name__)


def _codes(v: FactValue) -> tuple[str, ...]:
    """A list of codes as a decision field holds it (none when unset)."""
    return v if isinstance(v, tuple) else ()


def _rules_of(plan: StagePlan, bits: int) -> list[Rule]:
    """The rules of ``plan`` whose bits (by position in the stage) are set."""
    rules = plan.rules
    out = []
    while bits:
        low = bits & -bits
        out.append(rules[low.bit_length() - 1])
        bits ^= low
    return out


def _rank(rule: Rule) -> tuple[int, int]:
    """Resolution order: priority, higher first, then position in the pack."""
    return (-rule.priority, rule.order)


def _named(names: Mapping[str, str], v: FactValue) -> FactValue:
    """A code's display name (the code itself when it has none)."""
    return names.get(v, v) if isinstance(v, str) else v


def _show(slot: str, v: FactValue) -> FactValue | list[str]:
    if F.DECISION_FIELDS[slot].kind == "duration":
        return F.format_duration(v if isinstance(v, int) else None)
    if isinstance(v, tuple):
        return list(v)
    return v
