"""The matter store's vocabulary: what is recorded of a complaint, what recognition returns.

A *sighting* is what the store keeps of one complaint: its id, when and where it was received (channel,
receiving point and level, township and village), keyed hashes of the complainant's id number and phone,
the case id the frontend gave, and the similarity signature of its words (the words themselves only when
the operator turns keeping them on). No name, id number or phone is in it in clear.

A *recognition* is the answer to recording a sighting: the matter it belongs to, the evidence that linked
it, and the derived facts an enricher puts on the complaint before the engine (:meth:`Recognition.fields`).

This module knows nothing of databases, the engine or the transport.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from fenliu.domain import model
from fenliu.domain.errors import FenliuError
from fenliu.matter import signature as sig
from fenliu.matter.events import DecisionFacts, EventStore, MatterState
from fenliu.serving import decision_log

__all__ = [
    "DAY",
    "Evidence",
    "MatchSettings",
    "MatterFacts",
    "MatterStore",
    "Recognition",
    "SchemaTooNew",
    "Sighting",
    "StoreError",
    "StoreUnavailable",
    "decision_facts",
    "identity_hashes",
    "receiving_level",
    "receiving_point",
    "sighting_from_complaint",
]

DAY: Final = 86_400

#: Identity fields hashed for matching, in the order evidence names them.
IDENTITY_FIELDS: Final = ("id_number", "phone")

EvidenceKind = Literal["case_id", "identity", "content"]


class StoreError(FenliuError):
    """The matter store cannot be used (unreachable, refused, corrupt). The message is one line."""


class StoreUnavailable(StoreError):
    """The store did not answer in time or is down; the caller goes on without history."""


class SchemaTooNew(StoreError):
    """The store was written by a newer fenliu (a schema version this one does not know)."""


@dataclass(frozen=True, slots=True)
class MatchSettings:
    """How matters are recognized. Defaults are the ones measured in docs/matters.md.

    ``window_days``: earlier complaints older than this (counted back from the new complaint's
    ``received_at``) are not looked at. ``identity_similarity``: the least similarity (containment, see
    :mod:`fenliu.matter.signature`) of the words of two complaints by the same person (same id number or
    phone hash) for them to be one matter: one person's different matters are kept apart by it.
    ``content_similarity``: the least similarity for two complaints of the same village (or township,
    when no village is given) with no identity in common (a relative, a neighbour) to be one matter;
    ``content_jaccard``: and the least share of all their shingles they have in common (estimated
    Jaccard), so that a short text of common words is not "contained" in every long complaint.
    ``content_scan_limit``: at most this many of the newest complaints of that village are compared.
    ``keep_text``: store the words themselves (off: only their signature).
    """

    window_days: int = 180
    identity_similarity: float = 0.20
    content_similarity: float = 0.20
    content_jaccard: float = 0.05
    content_scan_limit: int = 5000
    keep_text: bool = False
    retention_days: int = 3 * 365

    def __post_init__(self) -> None:
        if self.window_days <= 0 or self.retention_days <= 0:
            raise ValueError("window_days and retention_days must be positive")
        for name in ("identity_similarity", "content_similarity", "content_jaccard"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie between 0 and 1")

    @property
    def window_seconds(self) -> int:
        return self.window_days * DAY


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the store keeps of one complaint. Build it with :func:`sighting_from_complaint`."""

    complaint_id: str
    received_at: int  # seconds since the epoch, UTC
    channel: str = model.UNSPECIFIED
    point: str = ""
    level: str = model.UNSPECIFIED
    township: str = ""
    village: str = ""
    identities: tuple[tuple[str, str], ...] = ()  # (field, keyed hash)
    case_id: str = ""
    signature: bytes = b""
    text: str | None = None
    decision_id: str = ""

    def __repr__(self) -> str:  # a sighting may carry the citizen's words: never print them by accident
        return f"Sighting({self.complaint_id!r}, received_at={self.received_at})"

    @property
    def scope(self) -> str:
        """Where content may link: the village (or, without one, the township)."""
        return self.village or self.township

    def lock_keys(self) -> tuple[str, ...]:
        """Names of what two concurrent recordings of one matter necessarily share (see the stores)."""
        keys = {f"complaint:{self.complaint_id}"}
        keys.update(f"identity:{h}" for _, h in self.identities)
        if self.case_id:
            keys.add(f"case:{self.case_id}")
        if self.scope and self.signature:
            keys.add(f"scope:{self.scope}")  # content links only within one scope
        return tuple(sorted(keys))

    def to_json(self) -> model.Json:
        return {
            "complaint_id": self.complaint_id,
            "received_at": self.received_at,
            "channel": self.channel,
            "point": self.point,
            "level": self.level,
            "township": self.township,
            "village": self.village,
            "identities": [list(i) for i in self.identities],
            "case_id": self.case_id,
            "signature": self.signature.hex(),
            "text": self.text,
            "decision_id": self.decision_id,
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Sighting:
        return Sighting(
            complaint_id=str(d["complaint_id"]),
            received_at=int(d["received_at"]),
            channel=str(d.get("channel", model.UNSPECIFIED)),
            point=str(d.get("point", "")),
            level=str(d.get("level", model.UNSPECIFIED)),
            township=str(d.get("township", "")),
            village=str(d.get("village", "")),
            identities=tuple((str(f), str(h)) for f, h in d.get("identities", ())),
            case_id=str(d.get("case_id", "")),
            signature=bytes.fromhex(str(d.get("signature", ""))),
            text=d.get("text"),
            decision_id=str(d.get("decision_id", "")),
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a complaint was linked to its matter: which earlier complaint, by what, how similar."""

    kind: EvidenceKind
    complaint_id: str
    field: str = ""  # for identity: id_number or phone
    similarity: float | None = None

    def to_dict(self) -> model.Json:
        d: model.Json = {"kind": self.kind, "complaint_id": self.complaint_id}
        if self.field:
            d["field"] = self.field
        if self.similarity is not None:
            d["similarity"] = round(self.similarity, 3)
        return d


@dataclass(frozen=True, slots=True)
class MatterFacts:
    """The derived facts of a matter, as seen by its newest complaint (which they include)."""

    prior_complaints: int = 0
    channels: tuple[str, ...] = ()
    points: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    days_since_first: int = 0
    first_point: str = ""
    first_level: str = model.UNSPECIFIED
    first_received_at: int = 0
    earlier_decision_ids: tuple[str, ...] = ()
    first_owner: str = ""  # the owner department of the matter's first decision (set_decision)
    #: where the matter stood before this complaint (its decisions and events, read in the recording's
    #: transaction); None for a new matter or one without a decision yet
    state: MatterState | None = None

    def to_dict(self) -> model.Json:
        return {
            "prior_complaints": self.prior_complaints,
            "channels": list(self.channels),
            "points": list(self.points),
            "levels": list(self.levels),
            "days_since_first": self.days_since_first,
            "first_receiver": {"point": self.first_point, "level": self.first_level},
            "first_received_at": datetime.fromtimestamp(self.first_received_at, UTC).isoformat(),
            "earlier_decision_ids": list(self.earlier_decision_ids),
        }


@dataclass(frozen=True, slots=True)
class Recognition:
    """The answer of :meth:`MatterStore.record`. ``available`` is False when the store could not be
    asked in time (then there is no matter and no facts: "history unavailable")."""

    available: bool
    matter_id: str = ""
    new_matter: bool = False
    evidence: tuple[Evidence, ...] = ()
    facts: MatterFacts = field(default_factory=MatterFacts)

    @staticmethod
    def unavailable() -> Recognition:
        return Recognition(available=False)

    @property
    def linked_by(self) -> tuple[str, ...]:
        return tuple(sorted({e.kind for e in self.evidence}))

    def fields(self) -> dict[str, Any]:
        """The derived facts as flat complaint fields, for the enricher to add before the engine."""
        f = self.facts
        return {
            "matter_history_available": self.available,
            "matter_id": self.matter_id,
            "matter_prior_complaints": f.prior_complaints,
            "matter_channel_count": len(f.channels),
            "matter_point_count": len(f.points),
            "matter_level_count": len(f.levels),
            "matter_days_since_first": f.days_since_first,
            "matter_first_point": f.first_point,
            "matter_first_level": f.first_level,
            "matter_linked_by": ",".join(self.linked_by),
            "matter_first_owner": f.first_owner,
        }

    def to_dict(self) -> model.Json:
        d: model.Json = {"history_available": self.available}
        if self.available:
            d.update(
                matter_id=self.matter_id,
                new_matter=self.new_matter,
                linked_by=[e.to_dict() for e in self.evidence],
                **self.facts.to_dict(),
            )
        return d


class MatterStore(EventStore, Protocol):
    """Where matters are remembered. Implementations: ``MemoryStore`` (tests), ``SQLiteStore``,
    ``PostgresStore``; ``GuardedStore`` wraps one with a deadline and a local queue. Every store
    follows matters too (:class:`fenliu.matter.events.EventStore`: events, states, the overdue).

    ``record`` looks up the sighting's matter and writes the sighting in one step, atomically: two
    recordings of one matter at the same moment (threads, processes, replicas) give one matter. Recording
    a complaint id that is already stored writes nothing and answers as the first time did.
    """

    settings: MatchSettings

    def record(self, sighting: Sighting) -> Recognition: ...

    def set_decision(self, facts: DecisionFacts) -> bool:
        """Write a complaint's decision: its id, its facts (deadlines, colour, owner… for following the
        matter) and the matter's state again, in one transaction. The first non-empty owner department
        of a matter (not of an excluded complaint) is kept as its first owner (``matter_first_owner``).
        False when the complaint is not stored."""
        ...

    def matter(self, matter_id: str) -> list[dict[str, Any]]:
        """A matter's complaints (id, time, channel, point, level, decision), oldest first; [] if none."""
        ...

    def purge(self, *, now: int | None = None) -> int:
        """Delete complaints older than the retention; return how many."""
        ...

    def forget(self, identity_hashes: tuple[str, ...]) -> int:
        """Delete every complaint linked to one of these identity hashes; return how many."""
        ...

    def count_matters(self) -> int: ...

    def close(self) -> None: ...


def _nfkc(v: str) -> str:
    return unicodedata.normalize("NFKC", v)


def identity_hashes(complainant: model.Complainant, key: bytes) -> tuple[tuple[str, str], ...]:
    """(field, keyed hash) of the id number and of the phone that are given.

    The hash is the decision log's (:func:`fenliu.serving.decision_log.keyed_hash`: same key, same normalization:
    spaces and dashes dropped, upper case), after NFKC so that full-width digits count as digits; for
    ASCII input it equals the decision log's hash of the same field. A malformed value is hashed and used
    all the same: it still names the person who gave it.
    """
    out: list[tuple[str, str]] = []
    for f in IDENTITY_FIELDS:
        v = _nfkc(getattr(complainant, f, "") or "").strip()
        if v:
            out.append((f, decision_log.keyed_hash(key, f, v)))
    return tuple(out)


def receiving_point(complaint: model.Complaint) -> str:
    """The receiving point's code: the complaint's own ``receiving_point`` when the front end names it,
    else its region code at the level that received it (village point, township station, banner
    centre); empty when neither is known."""
    given = complaint.receiving_point.get("code", "")
    if given:
        return given
    code = {"VILLAGE": "village_code", "TOWNSHIP": "township_code", "BANNER": "banner_code"}.get(
        complaint.received_tier, ""
    )
    return complaint.region.get(code, "") if code else ""


def receiving_level(complaint: model.Complaint) -> str:
    """The receiving point's level: the complaint's own ``receiving_point.level``, else ``received_tier``."""
    return complaint.receiving_point.get("level", "") or complaint.received_tier


def sighting_from_complaint(
    complaint: model.Complaint,
    *,
    key: bytes,
    settings: MatchSettings | None = None,
    point: str | None = None,
    level: str | None = None,
    decision_id: str = "",
) -> Sighting:
    """What the store keeps of ``complaint``. ``point`` and ``level`` name the receiving point when the
    caller knows it; by default they are read from ``received_tier`` and the region codes."""
    settings = settings or MatchSettings()
    words = "\n".join(w for w in (complaint.title, complaint.text) if w.strip())
    return Sighting(
        complaint_id=complaint.id,
        received_at=int(complaint.received_at.timestamp()),
        channel=complaint.channel,
        point=receiving_point(complaint) if point is None else point,
        level=receiving_level(complaint) if level is None else level,
        township=complaint.region.get("township_code", ""),
        village=complaint.region.get("village_code", ""),
        identities=identity_hashes(complaint.complainant, key),
        case_id=complaint.existing_case_id.strip(),
        signature=sig.signature(words) if words.strip() else b"",
        text=words if settings.keep_text else None,
        decision_id=decision_id,
    )


def decision_facts(complaint: model.Complaint, decision: model.Decision) -> DecisionFacts:
    """What the store keeps of ``decision`` on ``complaint`` (for :meth:`MatterStore.set_decision`):
    its deadlines in epoch seconds, the township of the complaint, the receiving point and level."""
    o = decision.outcome
    return DecisionFacts(
        complaint_id=complaint.id,
        decision_id=decision.decision_id,
        received_at=int(decision.received_at.timestamp()),
        category=o.category,
        colour=o.color,
        tier=o.tier,
        stage=o.stage,
        owner_department="" if o.excluded else o.owner_department,
        township=complaint.region.get("township_code", ""),
        point=receiving_point(complaint),
        level=receiving_level(complaint),
        excluded=o.excluded,
        deadlines={k: int(v.timestamp()) for k, v in decision.deadlines.items()},
    )


def with_state(rec: Recognition, state: MatterState | None) -> Recognition:
    """``rec`` with the matter's state before the complaint in its facts."""
    if state is None:
        return rec
    return dataclasses.replace(rec, facts=dataclasses.replace(rec.facts, state=state))


def now_seconds() -> int:
    return int(datetime.now(UTC).timestamp())


def days_between(earlier: int, later: int) -> int:
    return max(0, (later - earlier) // DAY)


def window_start(received_at: int, settings: MatchSettings) -> int:
    return received_at - settings.window_seconds
