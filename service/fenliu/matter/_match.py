"""Recognizing a complaint's matter: one algorithm, run by every store inside its own transaction.

A store gives a :class:`Tx` (its transaction: earlier complaints by identity hash and case id, the
signatures of a village's recent complaints, a matter's complaints, inserts); :func:`record` does the
rest, so memory, SQLite and PostgreSQL recognize alike. The transaction first takes the sighting's locks
(:meth:`Sighting.lock_keys`): everything by which two complaints can link (a complaint id, an identity
hash, a case id, a village for content) is a lock key, so two recordings that could link each other are
serialized and the second sees the first.

Linking, over the earlier complaints within the window (``received_at`` ± ``window_days``):

1. the same ``existing_case_id`` links, whatever the words;
2. the same id number or phone hash links when the words are at least ``identity_similarity`` alike
   (one person's *different* matters stay apart);
3. the same village (or township, when no village is given) and words at least ``content_similarity``
   alike, sharing at least ``content_jaccard`` of all their shingles, link (a relative, a neighbour,
   the same person without a shared identifier).

The strongest link wins (case id, then identity, then content; then the more similar; then the older
complaint); the evidence lists every kind that holds for the chosen matter. No link: a new matter.

Content candidates come from *scope buckets*: per village and week, one value holding the fixed-size
records (``seq``, ``received_at``, the signature's first ``PREFIX`` values) of that week's complaints, so
that comparing a new complaint with a village's half-year is a few reads and one vectorized comparison;
the few most alike are then compared on their whole signatures.
"""

from __future__ import annotations

import abc
import dataclasses
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np

from fenliu.domain import model
from fenliu.matter import signature as sig
from fenliu.matter._core import (
    DAY,
    Evidence,
    MatchSettings,
    MatterFacts,
    Recognition,
    Sighting,
)

BUCKET_SECONDS: Final = 7 * DAY
#: At most this many of a village's complaints, the most alike by their prefix, are compared in full.
CONTENT_CANDIDATES: Final = 16
#: A bucket record holds the signature's shingle count and its first ``PREFIX`` values only: enough to
#: pick the few most alike complaints of a village, whose whole signatures are then compared.
PREFIX: Final = 32
RECORD: Final = np.dtype([("seq", "<i8"), ("at", "<i8"), ("sig", "<u2", (PREFIX + 1,))])


def bucket_of(at: int) -> int:
    return at // BUCKET_SECONDS


def record_bytes(seq: int, at: int, signature: bytes) -> bytes:
    return struct.pack("<qq", seq, at) + signature[: 2 * (PREFIX + 1)]


def without(block: bytes, seqs: set[int]) -> bytes:
    """A bucket's records less those of ``seqs``."""
    recs = np.frombuffer(block, dtype=RECORD)
    keep = recs[~np.isin(recs["seq"], np.fromiter(seqs, dtype=np.int64))]
    return keep.tobytes()


@dataclass(frozen=True, slots=True)
class Candidate:
    """An earlier complaint that shares an identity hash or the case id, or is alike in one village."""

    seq: int
    complaint_id: str
    matter_id: str
    received_at: int
    township: str
    village: str
    signature: bytes
    identity_fields: frozenset[str] = frozenset()  # which of the sighting's identity fields it shares
    same_case: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    """One complaint of a matter, as the facts need it."""

    complaint_id: str
    received_at: int
    channel: str
    point: str
    level: str
    decision_id: str


@dataclass(frozen=True, slots=True)
class First:
    received_at: int
    point: str
    level: str
    owner: str = ""  # the owner department of the matter's first decision


class Tx(Protocol):
    def start(self, s: Sighting, since: int, until: int) -> None:
        """Take ``s``'s locks (:meth:`Sighting.lock_keys`) before anything is read. A store may send its
        first reads for ``s`` (``existing``, ``linked``, ``scope_block`` for this window) with them."""
        ...

    def existing(self, complaint_id: str) -> tuple[str, int] | None:
        """(matter id, received_at) of a complaint already stored."""
        ...

    def linked(self, s: Sighting, since: int, until: int) -> list[Candidate]:
        """Complaints sharing one of ``s``'s identity hashes or its case id."""
        ...

    def scope_block(self, scope: str, first_bucket: int, last_bucket: int) -> bytes:
        """The records of a scope's buckets in that range, newest bucket first."""
        ...

    def by_seq(self, seqs: Sequence[int]) -> list[Candidate]: ...

    def rows(self, matter_id: str, since: int, until: int) -> list[Row]: ...

    def first(self, matter_id: str) -> First | None: ...

    # A recording ends with one of these three (:class:`Ending` composes them of single steps); a store
    # may send each as one batch, and may commit with it.

    def again(self, matter_id: str, since: int, until: int) -> tuple[list[Row], First | None]:
        """``s`` is stored already (a retry): its matter's history, nothing written."""
        ...

    def open_matter(self, matter_id: str, s: Sighting) -> None:
        """A new matter whose first complaint is ``s``."""
        ...

    def join(self, matter_id: str, s: Sighting, since: int, until: int) -> tuple[list[Row], First | None]:
        """``s`` joins the matter: its history before ``s`` (as it was), the first receiver moved to ``s``
        when ``s`` is earlier, and ``s`` stored."""
        ...


class Ending(abc.ABC):
    """The three endings of a recording, made of a :class:`Tx`'s single steps (one round trip each)."""

    @abc.abstractmethod
    def history(self, matter_id: str, since: int, until: int) -> tuple[list[Row], First | None]:
        """``rows`` and ``first`` together (one statement where the store can)."""

    @abc.abstractmethod
    def new_matter(self, matter_id: str, s: Sighting) -> None:
        """The matter's row, with ``s`` as its first receiver."""

    @abc.abstractmethod
    def set_first(self, matter_id: str, s: Sighting) -> None:
        """``s`` becomes the matter's first receiver."""

    @abc.abstractmethod
    def insert(self, s: Sighting, matter_id: str) -> None:
        """Store ``s`` (its row, identity hashes, and its record in its scope's bucket)."""

    def again(self, matter_id: str, since: int, until: int) -> tuple[list[Row], First | None]:
        return self.history(matter_id, since, until)

    def open_matter(self, matter_id: str, s: Sighting) -> None:
        self.new_matter(matter_id, s)
        self.insert(s, matter_id)

    def join(self, matter_id: str, s: Sighting, since: int, until: int) -> tuple[list[Row], First | None]:
        rows, first = self.history(matter_id, since, until)
        if first is None or s.received_at < first.received_at:
            self.set_first(matter_id, s)
        self.insert(s, matter_id)
        return rows, first


def new_matter_id() -> str:
    return "m-" + uuid.uuid4().hex


def same_place(s: Sighting, c: Candidate) -> bool:
    """The same village (or, when the new complaint names no village, the same township)."""
    if s.village:
        return c.village == s.village
    return bool(s.township) and c.township == s.township


def alike_in_scope(tx: Tx, s: Sighting, since: int, until: int, settings: MatchSettings) -> list[int]:
    """Seqs of the scope's complaints in the window most alike by their signature's prefix."""
    if not s.scope or not s.signature:
        return []
    block = tx.scope_block(s.scope, bucket_of(since), bucket_of(until))
    if not block:
        return []
    recs = np.frombuffer(block, dtype=RECORD)
    recs = recs[(recs["at"] >= since) & (recs["at"] <= until)]
    if len(recs) > settings.content_scan_limit:
        recs = recs[np.argsort(-recs["at"], kind="stable")[: settings.content_scan_limit]]
    sims = sig.similarities(s.signature[: 2 * (PREFIX + 1)], recs["sig"])
    # the prefix is coarse: its ranking, not its value, is used; the most alike are compared in full
    return [int(x) for x in recs["seq"][top(sims, CONTENT_CANDIDATES)]]


def top(values: np.ndarray[Any, np.dtype[np.float64]], k: int) -> np.ndarray[Any, np.dtype[np.intp]]:
    """The indexes of the ``k`` largest values, largest first, ties in index order: the first ``k`` of
    a stable sort by descending value, without sorting them all."""
    if len(values) <= k:
        return np.argsort(-values, kind="stable")
    kth = np.partition(values, len(values) - k)[len(values) - k]  # the k-th largest
    above = np.flatnonzero(values > kth)
    tied = np.flatnonzero(values == kth)[: k - len(above)]
    chosen = np.concatenate((above, tied))  # both in index order
    order: np.ndarray[Any, np.dtype[np.intp]] = chosen[np.argsort(-values[chosen], kind="stable")]
    return order


def _similarities(s: Sighting, cands: Sequence[Candidate]) -> list[tuple[float, float]]:
    """(containment, Jaccard) of ``s``'s words and each candidate's, in one vectorized comparison."""
    full = [i for i, c in enumerate(cands) if len(c.signature) == sig.SIG_BYTES]
    out = [(0.0, 0.0)] * len(cands)
    if full and len(s.signature) == sig.SIG_BYTES:
        sims, jacc = sig.resemblances(s.signature, sig.unpack(b"".join(cands[i].signature for i in full)))
        for i, v, j in zip(full, sims.tolist(), jacc.tolist(), strict=True):
            out[i] = (float(v), float(j))
    return out


def _strength(
    c: Candidate, s: Sighting, settings: MatchSettings, simil: float, jaccard: float
) -> tuple[list[Evidence], int]:
    ev: list[Evidence] = []
    strength = 0
    if c.same_case:
        ev.append(Evidence("case_id", c.complaint_id))
        strength = 3
    if c.identity_fields and simil >= settings.identity_similarity and simil > 0:
        field = next(f for f in ("id_number", "phone") if f in c.identity_fields)
        ev.append(Evidence("identity", c.complaint_id, field=field, similarity=simil))
        strength = max(strength, 2)
    if same_place(s, c) and simil >= settings.content_similarity and jaccard >= settings.content_jaccard:
        ev.append(Evidence("content", c.complaint_id, similarity=simil))
        strength = max(strength, 1)
    return ev, strength


def choose(
    s: Sighting, candidates: Iterable[Candidate], settings: MatchSettings
) -> tuple[str, tuple[Evidence, ...]] | None:
    """The matter ``s`` belongs to and the evidence, or None for a new matter."""
    best: tuple[int, float, int] | None = None
    best_matter = ""
    by_matter: dict[str, dict[str, Evidence]] = {}
    cands = list(candidates)
    for c, (simil, jaccard) in zip(cands, _similarities(s, cands), strict=True):
        ev, strength = _strength(c, s, settings, simil, jaccard)
        if not strength:
            continue
        kinds = by_matter.setdefault(c.matter_id, {})
        for e in ev:
            old = kinds.get(e.kind)
            if old is None or (e.similarity or 0.0) > (old.similarity or 0.0):
                kinds[e.kind] = e
        rank = (strength, simil, -c.received_at)
        if best is None or rank > best:
            best, best_matter = rank, c.matter_id
    if best is None:
        return None
    order = {"case_id": 0, "identity": 1, "content": 2}
    return best_matter, tuple(sorted(by_matter[best_matter].values(), key=lambda e: order[e.kind]))


def facts(s: Sighting, rows: Sequence[Row], first: First | None) -> MatterFacts:
    earlier = sorted((r for r in rows if r.complaint_id != s.complaint_id), key=lambda r: r.received_at)
    prior = [r for r in earlier if r.received_at <= s.received_at]
    seen = [*prior, Row(s.complaint_id, s.received_at, s.channel, s.point, s.level, s.decision_id)]
    owner = first.owner if first is not None else ""
    f = first if first is not None and first.received_at <= s.received_at else None
    if f is None:
        f = First(s.received_at, s.point, s.level)
    return MatterFacts(
        prior_complaints=len(prior),
        channels=tuple(sorted({r.channel for r in seen if r.channel != model.UNSPECIFIED})),
        points=tuple(sorted({r.point for r in seen if r.point})),
        levels=tuple(sorted({r.level for r in seen if r.level != model.UNSPECIFIED})),
        days_since_first=max(0, (s.received_at - f.received_at) // DAY),
        first_point=f.point,
        first_level=f.level,
        first_received_at=f.received_at,
        earlier_decision_ids=tuple(r.decision_id for r in prior if r.decision_id),
        first_owner=owner,
    )


def candidates(tx: Tx, s: Sighting, since: int, until: int, settings: MatchSettings) -> list[Candidate]:
    found: dict[str, Candidate] = {c.complaint_id: c for c in tx.linked(s, since, until)}
    known = {c.seq for c in found.values()}
    extra = [q for q in alike_in_scope(tx, s, since, until, settings) if q not in known]
    for c in tx.by_seq(extra) if extra else ():
        found.setdefault(c.complaint_id, c)
    return [found[k] for k in sorted(found)]


def record(tx: Tx, s: Sighting, settings: MatchSettings) -> Recognition:
    """Look up ``s``'s matter and write ``s``, inside ``tx`` (which the caller commits)."""
    if s.text is not None and not settings.keep_text:
        s = dataclasses.replace(s, text=None)
    w = settings.window_seconds
    tx.start(s, s.received_at - w, s.received_at + w)
    done = tx.existing(s.complaint_id)
    if done is not None:  # the same complaint again (a retry, a replayed queue): nothing is written
        matter_id, at = done
        s2 = Sighting(s.complaint_id, at, s.channel, s.point, s.level)
        return Recognition(
            available=True,
            matter_id=matter_id,
            facts=facts(s2, *tx.again(matter_id, at - w, at)),
        )
    chosen = choose(s, candidates(tx, s, s.received_at - w, s.received_at + w, settings), settings)
    if chosen is None:
        matter_id = new_matter_id()
        tx.open_matter(matter_id, s)
        return Recognition(available=True, matter_id=matter_id, new_matter=True, facts=facts(s, (), None))
    matter_id, evidence = chosen
    rows, first = tx.join(matter_id, s, s.received_at - w, s.received_at)
    return Recognition(available=True, matter_id=matter_id, evidence=evidence, facts=facts(s, rows, first))
