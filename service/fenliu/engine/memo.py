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

Every memory a Decider keeps is a :class:`Memories`, below, with its bound; each starts afresh when it
reaches its bound. (Outside the Decider, :func:`fenliu.domain.model.deadlines_for` keeps at most 4,096
distinct durations.)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar

from fenliu.compiling.compiler import FactValue
from fenliu.domain import fields as F
from fenliu.domain.errors import Problem
from fenliu.domain.model import Outcome, TraceEntry
from fenliu.packs.types import OPERATORS, Pack, Rule, Test, iter_tests

if TYPE_CHECKING:
    from fenliu.engine.decider import _Transition

#: Default bound of the decision graph (nodes and edges); the others derive from it or are fixed.
GRAPH_NODES: Final = 80_000
#: The outcomes memory: a quarter of the graph's bound.
OUTCOMES_SHARE: Final = 4
#: The step memory (outlives a graph that starts afresh): a third of the graph's bound.
STEPS_SHARE: Final = 3
#: The matching, parts, transition and resolution memories, and trace entries: fixed.
STAGE_MEMORY: Final = 16_384

_CONSTANT_TYPES: Final = (str, int, float, bool, type(None))


def _constant(v: object) -> bool:
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


# ---------------------------------------------------------------------------------------------------
# The memories

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: The decision fields as a node holds them, in the Decider's order.
Slots: TypeAlias = tuple[FactValue, ...]
#: What keys a stage's matching: (stage, candidates as bits, the classes they read, ...), see
#: :meth:`fenliu.compiling.compiler.CompiledPack.match_key`.
StageKey: TypeAlias = tuple[Hashable, ...]


def keep(memory: dict[K, V], key: K, value: V, bound: int) -> V:
    """Put ``key → value`` into ``memory``, which starts afresh when it holds ``bound`` entries."""
    if len(memory) >= bound:
        memory.clear()
    memory[key] = value
    return value


class Node:
    """The decision fields as they stand after the first stages, remembered.

    The root holds the pack's defaults; each stage leads from a node to the next. A node's ``edges``
    map the class of the next stage's input (its tested complaint fields and keyword groups, read from
    the complaint's class key) to what that stage does there and the node it leads to. Everything else
    a stage reads (decision fields, table columns) is in the node itself, so an edge is a function of
    (node, class): a memoized decision is a walk of dictionary lookups, one per stage, which gathers
    the transitions taken; those name its outcome (:attr:`Memories.outcomes`). A node is its decision
    fields only, one node per fields at each depth: walks whose transitions differ only in their trace
    (which rules fired and lost) go on from the same node.
    """

    __slots__ = ("children", "classified", "edges", "slots")

    def __init__(self, slots: Slots, classified: bool) -> None:
        self.slots = slots  # decision field values, in the Decider's order
        self.classified = classified  # whether a rule has set the category
        # class of the next stage's input -> (the transition taken, the next node)
        self.edges: dict[Hashable, tuple[_Transition, Node]] = {}
        self.children: dict[_Transition, Node] = {}  # the transition taken (one per signature) -> next node


class Memories:
    """Every memory one :class:`~fenliu.engine.decider.Decider` keeps, their bounds, and how each starts
    afresh. All of them are per prepared pack: a reload starts afresh.

    * the **graph** (:class:`Node`): ``roots``, the nodes by depth and fields (``interned``), and the
      classes of input seen (``labels``, one key object each); ``graph_size`` (default
      :data:`GRAPH_NODES`) bounds its nodes and edges, past which it starts afresh (:meth:`new_graph`);
    * ``outcomes``: (hint ignored, transitions taken) → outcome; a quarter of the graph's bound;
    * ``steps``, per stage: (decision fields read, class of input) → what the stage does; a third of
      the graph's bound, and it outlives a graph that starts afresh, which is rebuilt from it;
    * ``stage_cache`` (the rules a stage's fact matches), ``part_memo`` (which rules of one part of
      the candidates match, as bits), ``transitions`` (what a stage does, with the values its `then`
      reads), ``resolved`` (per set of rules matched and those values), and ``entries`` (trace entries
      shared between transitions): :data:`STAGE_MEMORY` each;
    * ``same``: signature → the one transition kept for it, while some memory above holds it (weak).

    **Thread safety.** One Decider serves many threads. Every write to these memories is made holding
    ``lock`` (a decision that misses evaluates, and so writes, under it; a trace built later takes it
    too). Reads take no lock: a memoized decision is a walk of ``dict.get`` calls, each atomic in
    CPython, and what they can see is always whole: an edge or an entry is inserted only once its value
    is built, a node's fields never change, and a memory that starts afresh is cleared or replaced, so
    a reader finds either a complete, correct entry or none (and then takes the lock and evaluates).
    A walk in flight on a graph just replaced finishes on the old one, which is still correct. The
    Decider's counters (``stage_hits``, ``cache_hits``, ...) are statistics: a hit counted without the
    lock may be lost to a concurrent one. ``tests/test_memo_threads.py`` checks a shared Decider
    against the plain interpreter with bounds small enough to start afresh during walks.
    """

    __slots__ = (
        "entries",
        "graph_size",
        "interned",
        "labels",
        "lock",
        "nodes",
        "outcomes",
        "outcomes_size",
        "part_memo",
        "resolved",
        "roots",
        "same",
        "stage_cache",
        "stage_size",
        "start",
        "step_count",
        "steps",
        "steps_size",
        "transitions",
    )

    def __init__(self, stages: int, start: Slots, cache_size: int = GRAPH_NODES) -> None:
        self.lock = threading.RLock()
        self.start = start  # the root's decision fields: the pack's defaults
        self.graph_size = max(1, cache_size)
        self.outcomes: dict[tuple[bool, tuple[_Transition, ...]], Outcome] = {}
        self.outcomes_size = max(1, cache_size // OUTCOMES_SHARE)
        self.steps: list[dict[tuple[Hashable, Hashable], _Transition]] = [{} for _ in range(stages)]
        self.step_count = 0
        self.steps_size = max(1, cache_size // STEPS_SHARE)
        self.stage_size = STAGE_MEMORY
        self.stage_cache: dict[StageKey, tuple[Rule, ...]] = {}
        self.part_memo: dict[StageKey, int] = {}
        self.transitions: dict[StageKey, _Transition] = {}
        self.resolved: dict[StageKey, _Transition] = {}
        self.same: weakref.WeakValueDictionary[Hashable, _Transition] = weakref.WeakValueDictionary()
        self.entries: dict[Hashable, TraceEntry] = {}
        self.nodes = 0
        self.roots: dict[bool, Node] = {}
        self.interned: list[dict[tuple[Slots, bool], Node]] = []
        self.labels: dict[Hashable, Hashable] = {}
        self.new_graph()

    def new_graph(self) -> None:
        """Start the graph afresh (it has reached its bound). What each stage does per class of its
        input (``steps``) is kept: the new graph is rebuilt from it without evaluating stages."""
        self.nodes = 2
        # per depth (stages done), the node for each (decision fields, classified)
        self.interned = [{} for _ in self.steps]
        self.labels = {}
        # One root per value of "the hint was ignored", which only adds a note to the outcome.
        self.roots = {False: Node(self.start, False), True: Node(self.start, False)}

    def added(self, nodes: int = 1) -> bool:
        """Count nodes or edges added to the graph; whether it has reached its bound."""
        self.nodes += nodes
        return self.nodes >= self.graph_size

    def keep_step(self, depth: int, key: tuple[Hashable, Hashable], step: _Transition) -> _Transition:
        """Remember what the stage at ``depth`` does for ``key``; every stage's memory starts afresh
        together when they hold ``steps_size`` entries in all."""
        if self.step_count >= self.steps_size:
            self.steps = [{} for _ in self.steps]
            self.step_count = 0
        self.steps[depth][key] = step
        self.step_count += 1
        return step

    def keep_parts(self, split: list[tuple[StageKey, int]], fired_bits: int) -> None:
        """Remember, for each part of a stage's candidates, which of its rules matched."""
        memo = self.part_memo
        if len(memo) + len(split) > self.stage_size:
            memo.clear()
        for pkey, sub in split:
            memo[pkey] = fired_bits & sub

    def keep_resolved(self, key: StageKey, step: _Transition) -> _Transition:
        """Remember what a set of rules matched does; one transition (and its trace entries) per
        signature is kept, also across clearings of the memories that point to it."""
        return keep(self.resolved, key, self.same.setdefault(step.sig, step), self.stage_size)
