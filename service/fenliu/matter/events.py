"""The funnel over time: what happens on a matter after it is decided (督办、反馈、评价、回访).

An *event* is one thing that happened on a matter: the citizen was first contacted, a plan was made, the
complaint accepted, the handling extended (§34), a stage ended (resolved, failed, refused), the citizen
withdrew, the matter was handed on, the citizen evaluated it, a revisit was made. Events come from the
frontends (``RecordEvent``); each carries the caller's idempotency key, the stage, the time, and the
point that recorded it.

A matter's *state* is what its decisions and events add up to: open or closed, the stage it is at, the
last outcome (which re-triages the next complaint of the matter without the frontend saying so), its
owner (the department it was handed on to, else its first decision's), and its *deadlines* — those of
the first decision of its current round, with any extension — each met or not by an event.

The rules, in the words a county clerk uses (docs/matters.md, *The funnel over time*, says the same):

* A *round* of handling starts with the matter's first decision, and again with the first decision
  after a stage ended FAILED or REFUSED (the matter moved on a stage: new deadlines from that
  complaint). A repeat complaint within a round does not restart its clock.
* ``first_contact_by`` is met by FIRST_CONTACT; ``plan_by`` by PLAN_MADE; ``accept_by`` by ACCEPTED;
  ``resolve_by`` by any event that ends the round (RESOLVED, FAILED, REFUSED, WITHDRAWN). A later
  event meets every earlier deadline it implies (a plan implies the contact; an outcome implies contact,
  plan and acceptance), so a point that records only the outcome is not listed as overdue for the rest.
* EXTENDED (延期, §34): once per matter, by 1 to 30 days, with a reason, before the round ended; it
  moves ``resolve_by`` (never past the statutory 60 days plus the extension).
* RESOLVED and WITHDRAWN close the matter; a new complaint that is recognized as the same matter opens
  a new round. Nothing but EVALUATED and REVISITED may follow a closing event in the same round.
* HANDED_ON names the new owner department (and point); the first receiver (首接) stays in the history.
* Events are placed by their time, not by their arrival; the same idempotency key again is a repeat and
  changes nothing.

This module holds the vocabulary and the pure rules; the stores keep events and the state derived from
them. It knows nothing of databases, gRPC or the engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from fenliu.domain.errors import FenliuError

__all__ = [
    "CLOSING",
    "DEADLINES",
    "EVENT_KINDS",
    "MAX_EXTENSION_DAYS",
    "OUTCOME_KINDS",
    "SATISFACTIONS",
    "DecisionFacts",
    "Event",
    "EventRejected",
    "EventStore",
    "MatterState",
    "OpenCount",
    "OutcomeRow",
    "OverdueItem",
    "RecordedEvent",
    "UnknownMatter",
    "check",
    "fold",
]

EVENT_KINDS: Final = (
    "FIRST_CONTACT",
    "PLAN_MADE",
    "ACCEPTED",
    "EXTENDED",
    "RESOLVED",
    "FAILED",
    "REFUSED",
    "WITHDRAWN",
    "HANDED_ON",
    "EVALUATED",
    "REVISITED",
)
#: Events that end a round at a stage, with the contract's last_outcome they stand for.
OUTCOME_KINDS: Final[Mapping[str, str]] = {"RESOLVED": "RESOLVED", "FAILED": "FAILED", "REFUSED": "REFUSED"}
#: Events that close the matter.
CLOSING: Final = frozenset({"RESOLVED", "WITHDRAWN"})
SATISFACTIONS: Final = ("SATISFIED", "BASICALLY", "DISSATISFIED")
#: The deadlines of a decision (the contract's names), in the order they fall due.
DEADLINES: Final = ("first_contact_by", "plan_by", "accept_by", "resolve_by")
MAX_EXTENSION_DAYS: Final = 30
DAY: Final = 86_400
#: The levels whose resolutions count as settled at the grassroots (the 95% goal).
GRASSROOTS: Final = frozenset({"VILLAGE", "TOWNSHIP"})
#: Events that end a round (its resolve_by is met by them).
ENDING: Final = frozenset({"RESOLVED", "FAILED", "REFUSED", "WITHDRAWN"})
#: What may still happen after a stage ended FAILED or REFUSED, before the next decision.
AFTER_ENDED: Final = frozenset({"HANDED_ON", "WITHDRAWN", "EVALUATED", "REVISITED"})
#: What may still happen after a closing event, in the same round.
AFTER_CLOSED: Final = frozenset({"EVALUATED", "REVISITED"})
#: The deadlines each event meets (a later event meets the earlier ones it implies).
MEETS: Final[Mapping[str, tuple[str, ...]]] = {
    "FIRST_CONTACT": DEADLINES[:1],
    "PLAN_MADE": DEADLINES[:2],
    "ACCEPTED": DEADLINES[:3],
    **{k: DEADLINES for k in ENDING},
}

#: Matter status values.
OPEN: Final = "OPEN"
RESOLVED: Final = "RESOLVED"
WITHDRAWN: Final = "WITHDRAWN"


class UnknownMatter(FenliuError):
    """The event names a matter or decision the store does not know (NOT_FOUND)."""


class EventRejected(FenliuError):
    """The matter's history makes the event impossible (FAILED_PRECONDITION); the message says why in
    one line, with a stable ``code`` (e.g. ``second-extension``, ``matter-closed``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Event:
    """One event as a frontend gives it (validated by the transport). Times are epoch seconds, UTC.
    ``reason`` is already masked of anything shaped like personal data. ``matter_id`` or
    ``decision_id`` names the matter (the store resolves a decision id to its matter)."""

    idempotency_key: str
    kind: str
    stage: str
    occurred_at: int
    actor_point: str
    actor_level: str
    matter_id: str = ""
    decision_id: str = ""
    reason: str = ""
    extension_days: int = 0
    handed_to_department: str = ""
    handed_to_point: str = ""
    handed_to_level: str = ""
    satisfaction: str = ""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    event_id: str
    event: Event
    recorded_at: int


@dataclass(frozen=True, slots=True)
class DecisionFacts:
    """What the store keeps of a decision, for following its matter: written with the decision id
    (:meth:`fenliu.matter.MatterStore.set_decision`). ``deadlines`` maps the names in
    :data:`DEADLINES` that apply to epoch seconds."""

    complaint_id: str
    decision_id: str
    received_at: int
    category: str
    colour: str
    tier: str
    stage: str
    owner_department: str
    township: str
    point: str
    level: str
    excluded: bool = False
    deadlines: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MatterState:
    """Where a matter stands after its decisions and events (see the module's rules)."""

    matter_id: str
    status: str = OPEN
    stage: str = ""
    last_outcome: str = ""
    last_outcome_stage: str = ""
    last_outcome_event: str = ""  # the event id that set last_outcome
    owner_department: str = ""
    point: str = ""  # the point handling it now (handed on, else the first receiver)
    first_point: str = ""
    first_level: str = ""
    colour: str = ""
    tier: str = ""
    township: str = ""
    category: str = ""
    deadlines: Mapping[str, int] = field(default_factory=dict)
    met: Mapping[str, int] = field(default_factory=dict)
    extension_days: int = 0
    resolved_level: str = ""
    resolved_at: int = 0
    satisfaction: str = ""
    round_started_at: int = 0
    rounds: int = 0  # rounds of handling so far (1 after the first decision)
    round_ended: str = ""  # the event kind that ended the current round, "" while it runs

    @property
    def next_due(self) -> int | None:
        """The earliest deadline of an open matter without its event; None when there is none."""
        if self.status != OPEN:
            return None
        due = [t for n, t in self.deadlines.items() if n not in self.met]
        return min(due) if due else None

    def to_json(self) -> dict[str, Any]:
        # field by field: dataclasses.asdict deep-copies every value, a seventh of a decision's write
        d = {name: getattr(self, name) for name in _STATE_NAMES}
        d["deadlines"], d["met"] = dict(self.deadlines), dict(self.met)
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> MatterState:
        if _STATE_FIELDS.issuperset(d):  # as to_json wrote it (the overdue listing reads thousands)
            return MatterState(**d)
        return MatterState(**{k: v for k, v in d.items() if k in _STATE_FIELDS})

    def overdue(self, as_of: int) -> tuple[tuple[str, int, int], ...]:
        """(deadline, due, seconds past) of each deadline past ``as_of`` without its event, for an
        open matter; () for a closed one."""
        if self.status != OPEN:
            return ()
        return tuple(
            (name, due, as_of - due)
            for name in DEADLINES
            if (due := self.deadlines.get(name)) is not None and name not in self.met and due < as_of
        )


#: The fields of a state, read once (a state is read for every matter an overdue listing returns).
_STATE_NAMES: Final = tuple(f.name for f in dataclasses.fields(MatterState))
_STATE_FIELDS: Final = frozenset(_STATE_NAMES)


@dataclass(frozen=True, slots=True)
class OverdueItem:
    state: MatterState
    overdue: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class OpenCount:
    """Open and overdue matters of one (township, colour, tier, owner) at a time, for the gauges."""

    township: str
    colour: str
    tier: str
    owner_department: str
    open: int
    overdue: int


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One township's figures for a period (``fenliu report``): matters first received in it, matters
    resolved in it (by the level that resolved them), withdrawn, extended, evaluations by satisfaction,
    and the matters open and past a deadline at its end."""

    township: str
    received: int = 0
    resolved: int = 0
    resolved_grassroots: int = 0  # resolved at VILLAGE or TOWNSHIP level
    failed_or_refused: int = 0
    withdrawn: int = 0
    extended: int = 0
    evaluated: int = 0
    satisfied: int = 0
    basically: int = 0
    dissatisfied: int = 0
    open_at_end: int = 0
    overdue_at_end: int = 0


class EventStore(Protocol):
    """What a matter store offers for following matters (implemented by every store)."""

    def record_event(self, event: Event) -> tuple[RecordedEvent, bool, MatterState]:
        """Store ``event`` on its matter and answer (the stored event, whether this call stored it,
        the matter's state after it). Raises :class:`UnknownMatter` or :class:`EventRejected`; a repeat
        of an idempotency key answers as the first time did."""
        ...

    def events(self, matter_id: str) -> list[RecordedEvent]:
        """A matter's events by their time (then by arrival)."""
        ...

    def state(self, matter_id: str) -> MatterState | None: ...

    def overdue(
        self,
        as_of: int,
        *,
        colour: str = "",
        tier: str = "",
        township: str = "",
        owner_department: str = "",
        point: str = "",
        limit: int = 10_000,
    ) -> Iterator[OverdueItem]:
        """Open matters with a deadline before ``as_of`` and without its event, the earliest due
        first. Served from an index on the next unmet deadline: never a scan of every matter."""
        ...

    def open_counts(self, as_of: int) -> list[OpenCount]: ...

    def outcomes(self, start: int, end: int) -> list[OutcomeRow]: ...


# -- the rules


def outcome_names(kind: str, level: str, satisfaction: str) -> tuple[str, ...]:
    """The :class:`OutcomeRow` figures one event counts in (resolutions are counted per event: a
    matter counts once per resolution)."""
    if kind == "RESOLVED":
        return ("resolved", "resolved_grassroots") if level in GRASSROOTS else ("resolved",)
    if kind in ("FAILED", "REFUSED"):
        return ("failed_or_refused",)
    if kind == "WITHDRAWN":
        return ("withdrawn",)
    if kind == "EXTENDED":
        return ("extended",)
    if kind == "EVALUATED" and satisfaction in SATISFACTIONS:
        return (
            "evaluated",
            {"SATISFIED": "satisfied", "BASICALLY": "basically"}.get(satisfaction, "dissatisfied"),
        )
    return ()


def _event_order(r: RecordedEvent) -> tuple[int, int, str]:
    """Events by their time; at one second by the order of the funnel, then by key (never by arrival,
    so that any arrival order folds alike)."""
    e = r.event
    rank = EVENT_KINDS.index(e.kind) if e.kind in EVENT_KINDS else len(EVENT_KINDS)
    return (e.occurred_at, rank, e.idempotency_key)


def _decision_order(d: DecisionFacts) -> tuple[int, str]:
    return (d.received_at, d.decision_id)


def _rule(e: Event, st: MatterState, closed: bool) -> tuple[str, str] | None:
    """(code, message) when ``e`` cannot happen on a matter standing at ``st``; None when it can."""
    k = e.kind
    if k not in EVENT_KINDS:
        return "unknown-kind", f"unknown event kind {k}"
    if st.rounds == 0:
        return "before-decision", "the event is dated before the matter's first decision"
    if closed and k not in AFTER_CLOSED:
        return (
            "matter-closed",
            f"the matter was {st.status.lower()}: only an evaluation or a revisit may follow",
        )
    if st.round_ended and k not in AFTER_ENDED and not closed:
        return "round-ended", f"the stage already ended {st.round_ended}: {k} needs a new complaint first"
    if k == "EXTENDED":
        if st.extension_days:
            return "second-extension", "the matter was already extended once (§34 allows one extension)"
        if not 1 <= e.extension_days <= MAX_EXTENSION_DAYS:
            return (
                "extension-range",
                f"an extension is 1 to {MAX_EXTENSION_DAYS} days, not {e.extension_days}",
            )
        if not e.reason.strip():
            return "extension-reason", "an extension needs its reason"
    if k == "EVALUATED" and e.satisfaction not in SATISFACTIONS:
        return "satisfaction-missing", "an evaluation needs the citizen's satisfaction"
    if k == "REVISITED" and e.satisfaction and e.satisfaction not in SATISFACTIONS:
        return "satisfaction-missing", f"unknown satisfaction {e.satisfaction}"
    if k == "HANDED_ON" and not e.handed_to_department:
        return "handed-to-missing", "a hand-on names the department it goes to"
    return None


def _decide(st: MatterState, d: DecisionFacts) -> tuple[MatterState, bool]:
    """The state after decision ``d`` and whether it starts a round (its clock)."""
    owner = "" if d.excluded else d.owner_department
    if st.rounds and not st.round_ended:  # a repeat complaint within a round: the clock runs on
        return st, False
    first = st.rounds == 0
    st = dataclasses.replace(
        st,
        status=OPEN,
        stage=d.stage,
        colour=d.colour,
        tier=d.tier,
        category=d.category,
        township=st.township if (st.township and not d.township) else d.township,
        owner_department=owner,
        point=d.point,
        first_point=d.point if first else st.first_point,
        first_level=d.level if first else st.first_level,
        deadlines=dict(d.deadlines),
        met={},
        round_started_at=d.received_at,
        rounds=st.rounds + 1,
        round_ended="",
        resolved_level="",
        resolved_at=0,
    )
    return st, True


def _apply(st: MatterState, r: RecordedEvent) -> MatterState:
    e = r.event
    k = e.kind
    met = dict(st.met)
    for name in MEETS.get(k, ()):
        if name in st.deadlines and name not in met:
            met[name] = e.occurred_at
    ch: dict[str, Any] = {"met": met}
    if k == "EXTENDED":
        ch["extension_days"] = e.extension_days
        if "resolve_by" in st.deadlines:
            ch["deadlines"] = {
                **st.deadlines,
                "resolve_by": st.deadlines["resolve_by"] + e.extension_days * DAY,
            }
    elif k in OUTCOME_KINDS:
        ch.update(
            last_outcome=OUTCOME_KINDS[k],
            last_outcome_stage=e.stage or st.stage,
            last_outcome_event=r.event_id,
            round_ended=k,
        )
        if k == "RESOLVED":
            ch.update(status=RESOLVED, resolved_level=e.actor_level, resolved_at=e.occurred_at)
    elif k == "WITHDRAWN":
        ch.update(status=WITHDRAWN, round_ended=k)
    elif k == "HANDED_ON":
        ch.update(owner_department=e.handed_to_department, point=e.handed_to_point or st.point)
    elif k in ("EVALUATED", "REVISITED") and e.satisfaction:
        ch["satisfaction"] = e.satisfaction
    return dataclasses.replace(st, **ch)


def _fold(
    matter_id: str,
    decisions: Sequence[DecisionFacts],
    events: Sequence[RecordedEvent],
    strict: Callable[[RecordedEvent], bool],
) -> tuple[MatterState, frozenset[str]]:
    """The state, and the event ids left out as impossible (raising for those ``strict`` names)."""
    seen: set[str] = set()
    evs = []
    for r in sorted(events, key=_event_order):
        if r.event.idempotency_key not in seen:  # a repeat changes nothing
            seen.add(r.event.idempotency_key)
            evs.append(r)
    decs = {d.decision_id: d for d in sorted(decisions, key=_decision_order)}
    # one timeline: a decision before the events of its second
    timeline: list[tuple[int, int, DecisionFacts | RecordedEvent]] = [
        (d.received_at, 0, d) for d in decs.values()
    ]
    timeline += [(r.event.occurred_at, 1, r) for r in evs]
    timeline.sort(key=lambda t: (t[0], t[1]))
    st = MatterState(matter_id=matter_id)
    skipped: set[str] = set()
    for _, _, item in timeline:
        if isinstance(item, DecisionFacts):
            st, _started = _decide(st, item)
            continue
        closed = st.round_ended in CLOSING
        why = _rule(item.event, st, closed)
        if why is not None:
            if strict(item):
                raise EventRejected(*why)
            skipped.add(item.event_id)
            continue
        st = _apply(st, item)
    return st, frozenset(skipped)


def fold(matter_id: str, decisions: Sequence[DecisionFacts], events: Sequence[RecordedEvent]) -> MatterState:
    """What a matter's decisions and events add up to, placed by their time (the module's rules). An
    event that its history makes impossible (a decision that arrived late can do that) is left out."""
    return _fold(matter_id, decisions, events, lambda r: False)[0]


def then_decided(state: MatterState, decision: DecisionFacts) -> MatterState:
    """The state after ``decision``, when the fold that made ``state`` would place it last: received
    after every event and (by received time, then id) after every other decision of the matter. Equal to
    folding the whole history again (a test compares them); a store checks that order before using it."""
    return _decide(state, decision)[0]


def check(
    matter_id: str,
    decisions: Sequence[DecisionFacts],
    events: Sequence[RecordedEvent],
    new: RecordedEvent,
) -> MatterState:
    """The state with ``new`` placed among ``events`` by its time; :class:`EventRejected` when ``new``
    is impossible there, or makes impossible an event already stored after it."""
    _, before = _fold(matter_id, decisions, events, lambda r: False)
    state, _ = _fold(matter_id, decisions, [*events, new], lambda r: r.event_id not in before)
    return state
