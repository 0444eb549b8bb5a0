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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

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
