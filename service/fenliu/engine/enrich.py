"""The enrichment step: complaint → complaint with derived fields, between validation and the engine.

A pack's enrichers run in order, each declaring the fields it adds (``adds``); what they derive enters
the complaint as fields rules test like any other (:data:`fenliu.domain.fields.COMPLAINT_FIELDS`), so the
engine stays pure: nothing stateful is read inside it, and the class of input a memoized decision
depends on includes only these few values (codes and booleans, never a score). The scores, the model's
probabilities and the words that counted ride along as :class:`~fenliu.domain.model.TextEvidence`, told per
decision (suggestions, trace), never part of a shared outcome.

:class:`~fenliu.engine.decider.Decider` runs the pack's enrichment at the start of every decision, so the
server, ``fenliu eval``, ``fenliu test``, ``fenliu diff`` and the benchmark all run it the same way. A
complaint already ``enriched`` (a test case giving the derived fields itself) is left as it is.

Every enricher declares the fields it adds (``adds``), each one of :data:`~fenliu.domain.model.DERIVED_FIELDS`;
:class:`Enrichment` refuses an undeclared one when it is built and an enricher that writes beyond its
declaration when it runs. An enricher that needs state (a matter's history) reads it through a
:class:`Store`, given to it when it is built; :class:`MemoryStore` is the in-memory one for tests. Keys
are never personal data in clear (hash them first, :mod:`fenliu.domain.personal`).

Enrichers of the reference pack: :class:`LexiconEnricher` (``text_category``, ``text_confident``)
and, when the pack has a model, :class:`ModelEnricher` (``model_category``, ``model_confident``,
``model_agrees``). A pack without a lexicon has no enrichers and decides exactly as before.

Module state: none. ``_with_derived`` is a function compiled once from the complaint's fields; state
an enricher needs is in its own :class:`Store`.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from fenliu.domain.model import DERIVED_FIELDS, UNCLASSIFIED, Complaint, Suggestion, TextEvidence
from fenliu.engine.text import Lexicon, TextModel, complaint_text, decide_lexicon, pack_model, softmax_top
from fenliu.packs.types import Pack

#: How many suggestions a decision carries at most.
MAX_SUGGESTIONS = 3
#: How many candidate categories the trace shows.
TRACE_CANDIDATES = 5

_V = TypeVar("_V")


class Enricher(Protocol):
    """One step of the enrichment: reads a complaint (and what earlier enrichers derived), adds fields."""

    name: str
    adds: tuple[str, ...]

    def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None:
        """Add this enricher's fields to ``derived`` (which holds what earlier ones derived, and
        ``evidence``, and intermediate values under keys that start with ``_``); the complaint is
        rebuilt once, after the last."""
        ...


class Store(Protocol[_V]):
    """State an enricher reads (and may record): values (of type ``_V``) by key. Keys are never personal
    data in clear."""

    def get(self, key: str) -> _V | None: ...

    def put(self, key: str, value: _V) -> None: ...


class MemoryStore(Generic[_V]):
    """A :class:`Store` in a dict, safe from many threads: for tests and single-process trials."""

    def __init__(self) -> None:
        self._data: dict[str, _V] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> _V | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: _V) -> None:
        with self._lock:
            self._data[key] = value

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class LexiconEnricher:
    """Scores every category with the pack's lexicon; the best is confident when it reaches the pack's
    threshold and beats the runner-up by its margin."""

    name = "lexicon"
    adds: tuple[str, ...] = ("text_category", "text_confident")

    def __init__(self, lexicon: Lexicon, threshold: float, margin: float) -> None:
        self.lexicon = lexicon
        self.threshold = threshold
        self.margin = margin

    def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None:
        scored = self.lexicon.score(text)
        cat, confident = decide_lexicon(scored, self.threshold, self.margin)
        evidence = TextEvidence(
            scores=tuple((s.category, s.score, s.counted) for s in scored[:TRACE_CANDIDATES]),
            suggestions=tuple(Suggestion(s.category, s.score) for s in scored if s.score > 0)[
                :MAX_SUGGESTIONS
            ],
        )
        derived.update(text_category=cat, text_confident=confident, evidence=evidence, _lexicon_scored=scored)


class ModelEnricher:
    """Applies the pack's text model: its category, confident at the pack's ``model_confidence``, and
    whether it names the lexicon's best category. It ranks the suggestions (score: its probability)."""

    name = "model"
    adds: tuple[str, ...] = ("model_category", "model_confident", "model_agrees")

    def __init__(self, model: TextModel, confidence: float, categories: Sequence[str]) -> None:
        self.model = model
        self.confidence = confidence
        self._valid = frozenset(categories) - {UNCLASSIFIED}

    def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None:
        scored = derived.get("_lexicon_scored", ())
        probs = self.model.predict(text, [(s.category, s.score) for s in scored] if scored else ())
        top = softmax_top(probs, self.model.classes, MAX_SUGGESTIONS + 1)
        best, p = top[0]
        cls = self.model.classes.index(best)
        category = best if best in self._valid else ""
        confident = bool(category) and p >= self.confidence
        ev = derived.get("evidence") or TextEvidence()
        # The model ranks the suggestions (its first is right far more often than the lexicon's,
        # docs/text.md); their score is its probability.
        suggestions = [Suggestion(cat, round(p, 3)) for cat, p in top if cat in self._valid][:MAX_SUGGESTIONS]
        evidence = TextEvidence(
            scores=ev.scores,
            model=tuple((k, round(v, 4)) for k, v in top),
            suggestions=tuple(suggestions),
            explain=functools.partial(self.model.explain, text, cls),
        )
        derived.update(
            model_category=category,
            model_confident=confident,
            model_agrees=bool(category) and category == derived.get("text_category", c.text_category),
            evidence=evidence,
        )


class Enrichment:
    """A pack's enrichers, in order. ``bool(enrichment)`` is false when there are none."""

    def __init__(self, enrichers: Sequence[Enricher]) -> None:
        self.enrichers = tuple(enrichers)
        seen: dict[str, str] = {}
        bad: list[str] = []
        for e in self.enrichers:
            for f in e.adds:
                if f not in DERIVED_FIELDS:
                    bad.append(f"enricher {e.name}: '{f}' is not a derived complaint field")
                elif f in seen:
                    bad.append(f"enricher {e.name}: '{f}' is added by {seen[f]} already")
                seen.setdefault(f, e.name)
        if bad:
            raise ValueError("; ".join(bad))
        self._allowed = [frozenset((*e.adds, "evidence")) for e in self.enrichers]

    def __bool__(self) -> bool:
        return bool(self.enrichers)

    @property
    def adds(self) -> tuple[str, ...]:
        return tuple(f for e in self.enrichers for f in e.adds)

    def __call__(self, c: Complaint) -> Complaint:
        return self.through(c, len(self.enrichers))[1]

    def through(self, c: Complaint, first: int) -> tuple[Complaint, Complaint]:
        """(``c`` enriched by the first ``first`` enrichers alone, ``c`` enriched by all), in one pass.
        An enricher writes new values and never changes those written before it, so what the first
        ``first`` wrote is what they would write alone (``fenliu score`` reads the lexicon alone and
        with the model, at every load: one lexicon pass instead of two)."""
        if c.enriched or not self.enrichers:
            return c, c
        text = complaint_text(c.title, c.text)
        derived: dict[str, Any] = {}
        allowed: frozenset[str] = frozenset()
        early: dict[str, Any] | None = None  # what the first ``first`` wrote (none when they are all)
        for i, (e, own) in enumerate(zip(self.enrichers, self._allowed, strict=True)):
            if i == first:
                early = dict(derived)
            e(c, text, derived)
            allowed |= own
            # A key that starts with "_" is an intermediate one enricher hands the next (the lexicon's
            # scores, for the model); it never reaches the complaint.
            if not allowed.issuperset(k for k in derived if not k.startswith("_")):
                raise ValueError(f"enricher {e.name} set fields it does not declare")
        whole = _with_derived(c, derived)
        return (whole if early is None else _with_derived(c, early)), whole


def _rebuilder() -> Callable[[Complaint, dict[str, Any]], Complaint]:
    """``(complaint, derived) -> complaint`` with the derived fields set and ``enriched`` true: what
    ``dataclasses.replace`` does, written out once for the complaint's fields (a third of its cost)."""
    names = [f.name for f in dataclasses.fields(Complaint)]
    body = "".join(
        f"    s(n, {k!r}, d.get({k!r}, c.{k}))\n"
        if k in (*DERIVED_FIELDS, "evidence")
        else f"    s(n, {k!r}, c.{k})\n"
        for k in names
        if k != "enriched"
    )
    src = f"def rebuild(c, d):\n    n = new(Complaint)\n{body}    s(n, 'enriched', True)\n    return n\n"
    scope: dict[str, Any] = {"new": object.__new__, "Complaint": Complaint, "s": object.__setattr__}
    exec(compile(src, "<fenliu.engine.enrich rebuild>", "exec"), scope)
    rebuild: Callable[[Complaint, dict[str, Any]], Complaint] = scope["rebuild"]
    return rebuild


_with_derived = _rebuilder()


def enrichment_for(pack: Pack, *, model: bool = True, extra: Sequence[Enricher] = ()) -> Enrichment:
    """The pack's enrichers: the lexicon scorer when it has a lexicon, then its model when it has one
    (``model=False`` leaves the model out, to measure the lexicon alone), then ``extra`` in order.
    Raises :class:`~fenliu.domain.errors.PackError` when the model file is missing, corrupt or not the pack's."""
    enrichers: list[Enricher] = []
    if pack.lexicon:
        enrichers.append(LexiconEnricher(Lexicon(pack.lexicon), pack.text.threshold, pack.text.margin))
    text_model = pack_model(pack)
    if text_model is not None and model:
        enrichers.append(ModelEnricher(text_model, pack.text.model_confidence, list(pack.categories)))
    return Enrichment([*enrichers, *extra])
