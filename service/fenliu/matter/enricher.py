"""The matter step: before the engine, recognize the complaint's matter and put its history on it.

:class:`MatterEnricher` records the complaint in a :class:`~fenliu.matter.MatterStore` (usually a
:class:`~fenliu.matter.GuardedStore`, which answers within its deadline or says "history unavailable")
and adds the derived ``matter_*`` fields (:data:`fenliu.domain.model.MATTER_FIELDS`, declared in the field
table) to the complaint, so rules, lint, the pack's cases and ``diff`` treat them like any field. After
the engine, :meth:`MatterEnricher.after` writes the decision id back and attaches the decision's
``matter`` part and its owning point (首接).

It is an :class:`~fenliu.engine.enrich.Enricher` too (``adds`` the matter fields), for a caller that runs
it inside an :class:`~fenliu.engine.enrich.Enrichment`; the server calls :meth:`recognize` itself,
because the recognition (evidence, lists, earlier decisions) belongs to the decision and not to the
complaint's rule-visible fields. Nothing here knows gRPC or a database.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Final

from fenliu.domain.model import MATTER_FIELDS, STAGES, UNSPECIFIED, Complaint, Decision, Json
from fenliu.matter._core import (
    MatterStore,
    Recognition,
    decision_facts,
    receiving_level,
    receiving_point,
    sighting_from_complaint,
)
from fenliu.matter.events import MatterState

#: The outcomes that move a matter on a stage (the contract's re-triage rule).
RETRIAGE_OUTCOMES: Final = frozenset({"FAILED", "REFUSED"})

__all__ = ["MatterEnricher", "is_multi_door", "retriage"]

#: A matter seen through this many channels or receiving points is 多头访.
MULTI_DOOR: Final = 2


def is_multi_door(rec: Recognition) -> bool:
    """Seen through two or more channels or receiving points (多头访)."""
    f = rec.facts
    return rec.available and (len(f.channels) >= MULTI_DOOR or len(f.points) >= MULTI_DOOR)


class MatterEnricher:
    """Recognizes each complaint's matter in ``store``, hashing identities with ``key`` (the decision
    log's key discipline: :func:`fenliu.serving.decision_log.load_hash_key`)."""

    name = "matter"
    adds: tuple[str, ...] = MATTER_FIELDS

    def __init__(self, store: MatterStore, key: bytes) -> None:
        self.store = store
        self.key = key

    def recognize(self, c: Complaint) -> tuple[Complaint, Recognition, float]:
        """The complaint with its matter fields, the recognition, and the store's time in seconds."""
        start = time.perf_counter()
        rec = self.store.record(sighting_from_complaint(c, key=self.key, settings=self.store.settings))
        took = time.perf_counter() - start
        return with_matter(c, rec), rec, took

    def __call__(self, c: Complaint, text: str, derived: dict[str, Any]) -> None:
        _c, rec, _took = self.recognize(c)
        derived.update(rec.fields())
        derived["_matter"] = rec

    def after(self, c: Complaint, decision: Decision, rec: Recognition) -> Decision:
        """Write the decision id to the store (best effort), with its owner department (kept as the
        matter's first owner when it has none; not for an excluded complaint, whose owner is the body
        it is referred to), and attach the ``matter`` part and the owning point to the decision."""
        if rec.available:
            self.store.set_decision(decision_facts(c, decision))
        part = matter_part(rec)
        if c.matter_outcome_event:
            part["moved_by_event"] = c.matter_outcome_event
        return dataclasses.replace(
            decision, matter=part, owning_point=owning_point(c, rec), matter_notes=retriage_notes(c)
        )


def with_matter(c: Complaint, rec: Recognition) -> Complaint:
    """``c`` with the recognition's derived fields, re-triaged by its matter's state (:func:`retriage`)."""
    return retriage(dataclasses.replace(c, **rec.fields()), matter_state(rec), rec.facts.first_owner)


def matter_state(rec: Recognition) -> MatterState | None:
    """Where the recognized matter stands after its events (``None`` without history or events)."""
    return rec.facts.state if rec.available else None


def retriage(c: Complaint, state: MatterState | None, first_owner: str = "") -> Complaint:
    """The matter moves on by itself (再分流): when its last outcome at a stage was FAILED or REFUSED,
    the complaint is decided as if it carried that ``last_stage``/``last_outcome``, combined with what
    the frontend sent: the later stage wins (the same stage: what was sent). ``matter_outcome_event``
    names the event that moved it. A handed-on matter names its new owner (``matter_owner``)."""
    if state is None:
        return c
    changes: dict[str, Any] = {}
    if state.owner_department and state.owner_department != first_owner:
        changes["matter_owner"] = state.owner_department
    stage, outcome = state.last_outcome_stage, state.last_outcome
    if outcome in RETRIAGE_OUTCOMES and stage in STAGES:
        sent = c.last_stage
        if sent not in STAGES or STAGES.index(stage) > STAGES.index(sent):
            changes.update(
                last_stage=stage, last_outcome=outcome, matter_outcome_event=state.last_outcome_event
            )
    return dataclasses.replace(c, **changes) if changes else c


def retriage_notes(c: Complaint) -> tuple[str, ...]:
    """The trace's note of the matter step, naming the event that re-triaged the complaint."""
    notes: list[str] = []
    if c.matter_outcome_event:
        notes.append(
            f"matter: re-triaged from event {c.matter_outcome_event} "
            f"(last_stage {c.last_stage}, last_outcome {c.last_outcome})"
        )
    if c.matter_owner:
        notes.append(f"matter: handed on to {c.matter_owner}")
    return tuple(notes)


def matter_part(rec: Recognition) -> Json:
    """The decision's ``matter`` part: the recognition's explainable answer and whether it is 多头访."""
    return {**rec.to_dict(), "multi_door": is_multi_door(rec)}


def owning_point(c: Complaint, rec: Recognition) -> dict[str, str] | None:
    """The receiving point that owns the matter (首接): its first receiver, or, for a new matter or
    without history, the point that received this complaint; ``None`` when no point is known."""
    if rec.available and rec.facts.first_point:
        return {"code": rec.facts.first_point, "level": rec.facts.first_level or UNSPECIFIED}
    code = receiving_point(c)
    return {"code": code, "level": receiving_level(c) or UNSPECIFIED} if code else None
