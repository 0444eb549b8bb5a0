"""``MemoryStore``: the matter store in one process's memory, for tests and measurements.

It runs the same recognition as the database stores (:mod:`fenliu.matter._match`) over plain dicts, under
one lock; it forgets everything when the process ends.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from fenliu.matter import _match
from fenliu.matter import events as ev
from fenliu.matter._core import MatchSettings, Recognition, Sighting, now_seconds, with_state
from fenliu.matter.events import (
    DecisionFacts,
    Event,
    MatterState,
    OpenCount,
    OutcomeRow,
    OverdueItem,
    RecordedEvent,
    UnknownMatter,
)

__all__ = ["MemoryStore"]


def _sql_event_id() -> str:
    return "e-" + uuid.uuid4().hex


class _MemoryTx(_match.Ending):
    def __init__(self, store: MemoryStore) -> None:
        self.st = store

    def start(self, s: Sighting, since: int, until: int) -> None:
        del s, since, until  # the store's one lock is held for the whole recording

    def existing(self, complaint_id: str) -> tuple[str, int] | None:
        s = self.st.complaints.get(complaint_id)
        return None if s is None else (self.st.matter_of[complaint_id], s.received_at)

    def _candidate(self, cid: str, mine: dict[str, str], case_id: str) -> _match.Candidate:
        st = self.st
        c = st.complaints[cid]
        return _match.Candidate(
            st.seq_of[cid],
            cid,
            st.matter_of[cid],
            c.received_at,
            c.township,
            c.village,
            c.signature,
            frozenset(mine[h] for _, h in c.identities if h in mine),
            bool(case_id) and c.case_id == case_id,
        )

    def linked(self, s: Sighting, since: int, until: int) -> list[_match.Candidate]:
        st = self.st
        ids: set[str] = set()
        for _, h in s.identities:
            ids.update(st.by_identity.get(h, ()))
        if s.case_id:
            ids.update(st.by_case.get(s.case_id, ()))
        mine = {h: f for f, h in s.identities}
        return [
            self._candidate(cid, mine, s.case_id)
            for cid in sorted(ids)
            if since <= st.complaints[cid].received_at <= until
        ]

    def scope_block(self, scope: str, first_bucket: int, last_bucket: int) -> bytes:
        buckets = self.st.buckets.get(scope, {})
        return b"".join(buckets.get(b, b"") for b in range(last_bucket, first_bucket - 1, -1))

    def by_seq(self, seqs: Sequence[int]) -> list[_match.Candidate]:
        return [self._candidate(self.st.by_seq[q], {}, "") for q in seqs if q in self.st.by_seq]

    def rows(self, matter_id: str, since: int, until: int) -> list[_match.Row]:
        st = self.st
        out = []
        for cid in st.members.get(matter_id, ()):
            c = st.complaints[cid]
            if since <= c.received_at <= until:
                out.append(
                    _match.Row(cid, c.received_at, c.channel, c.point, c.level, st.decisions.get(cid, ""))
                )
        return out

    def first(self, matter_id: str) -> _match.First | None:
        return self.st.firsts.get(matter_id)

    def history(self, matter_id: str, since: int, until: int) -> tuple[list[_match.Row], _match.First | None]:
        return self.rows(matter_id, since, until), self.first(matter_id)

    def new_matter(self, matter_id: str, s: Sighting) -> None:
        self.set_first(matter_id, s)

    def set_first(self, matter_id: str, s: Sighting) -> None:
        old = self.st.firsts.get(matter_id)
        self.st.firsts[matter_id] = _match.First(s.received_at, s.point, s.level, old.owner if old else "")

    def insert(self, s: Sighting, matter_id: str) -> None:
        st = self.st
        st.next_seq += 1
        seq = st.next_seq
        st.complaints[s.complaint_id] = s
        st.seq_of[s.complaint_id] = seq
        st.by_seq[seq] = s.complaint_id
        st.matter_of[s.complaint_id] = matter_id
        st.members[matter_id].append(s.complaint_id)
        if s.decision_id:
            st.decisions[s.complaint_id] = s.decision_id
        for _, h in s.identities:
            st.by_identity[h].add(s.complaint_id)
        if s.case_id:
            st.by_case[s.case_id].add(s.complaint_id)
        if s.scope and s.signature:
            b = st.buckets.setdefault(s.scope, {})
            k = _match.bucket_of(s.received_at)
            b[k] = b.get(k, b"") + _match.record_bytes(seq, s.received_at, s.signature)


class MemoryStore:
    """A :class:`~fenliu.matter.MatterStore` in memory. Thread-safe; not shared between processes."""

    url = "memory:"

    def __init__(self, settings: MatchSettings | None = None) -> None:
        self.settings = settings or MatchSettings()
        self._lock = threading.Lock()
        self.complaints: dict[str, Sighting] = {}
        self.matter_of: dict[str, str] = {}
        self.members: defaultdict[str, list[str]] = defaultdict(list)
        self.firsts: dict[str, _match.First] = {}
        self.decisions: dict[str, str] = {}
        self.by_identity: defaultdict[str, set[str]] = defaultdict(set)
        self.by_case: defaultdict[str, set[str]] = defaultdict(set)
        self.seq_of: dict[str, int] = {}
        self.by_seq: dict[int, str] = {}
        self.next_seq = 0
        self.buckets: dict[str, dict[int, bytes]] = {}
        # following matters: decision facts and events per matter, events by key, states
        self.decision_facts: defaultdict[str, dict[str, DecisionFacts]] = defaultdict(dict)
        self.matter_of_decision: dict[str, str] = {}
        self.events_of: defaultdict[str, list[RecordedEvent]] = defaultdict(list)
        self.event_by_key: dict[str, RecordedEvent] = {}
        self.states: dict[str, MatterState] = {}
        self.first_received: dict[str, int] = {}

    def record(self, sighting: Sighting) -> Recognition:
        with self._lock:
            rec = _match.record(_MemoryTx(self), sighting, self.settings)
            return rec if rec.new_matter else with_state(rec, self.states.get(rec.matter_id))

    def set_decision(self, facts: DecisionFacts) -> bool:
        with self._lock:
            complaint_id = facts.complaint_id
            if complaint_id not in self.complaints:
                return False
            self.decisions[complaint_id] = facts.decision_id
            m = self.matter_of[complaint_id]
            f = self.firsts.get(m)
            owner = "" if facts.excluded else facts.owner_department
            if owner and f is not None and not f.owner:
                self.firsts[m] = dataclasses.replace(f, owner=owner)
            if facts.decision_id:
                old = self.matter_of_decision.get(facts.decision_id)
                if old is not None:
                    self.decision_facts[old].pop(facts.decision_id, None)
                self.decision_facts[m][facts.decision_id] = facts
                self.matter_of_decision[facts.decision_id] = m
                self._refresh_state(m)
            return True

    def _refresh_state(self, m: str) -> None:
        decisions = list(self.decision_facts.get(m, {}).values())
        if not decisions:
            self.states.pop(m, None)
            self.first_received.pop(m, None)
            return
        self.states[m] = ev.fold(m, decisions, self.events_of.get(m, []))
        self.first_received[m] = min(d.received_at for d in decisions)

    # -- following matters (EventStore); the overdue and the counts scan the states (a test double)

    def record_event(self, event: Event) -> tuple[RecordedEvent, bool, MatterState]:
        with self._lock:
            matter_id = event.matter_id
            if event.decision_id:
                found = self.matter_of_decision.get(event.decision_id)
                if found is None:
                    raise UnknownMatter(f"unknown decision {event.decision_id}")
                if matter_id and matter_id != found:
                    raise UnknownMatter(f"decision {event.decision_id} is not of matter {matter_id}")
                matter_id = found
            if not matter_id or matter_id not in self.members:
                raise UnknownMatter(f"unknown matter {matter_id}")
            done = self.event_by_key.get(event.idempotency_key)
            if done is not None:
                m = done.event.matter_id
                return done, False, self.states.get(m) or MatterState(matter_id=m)
            new = RecordedEvent(
                _sql_event_id(), dataclasses.replace(event, matter_id=matter_id), now_seconds()
            )
            decisions = list(self.decision_facts.get(matter_id, {}).values())
            st = ev.check(matter_id, decisions, self.events_of.get(matter_id, []), new)
            self.events_of[matter_id].append(new)
            self.event_by_key[event.idempotency_key] = new
            self.states[matter_id] = st
            return new, True, st

    def events(self, matter_id: str) -> list[RecordedEvent]:
        with self._lock:
            return sorted(self.events_of.get(matter_id, []), key=lambda r: r.event.occurred_at)

    def state(self, matter_id: str) -> MatterState | None:
        with self._lock:
            return self.states.get(matter_id)

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
        want = {
            "colour": colour,
            "tier": tier,
            "township": township,
            "owner_department": owner_department,
            "point": point,
        }
        with self._lock:
            found = [
                (due, st.matter_id, st)
                for st in self.states.values()
                if (due := st.next_due) is not None
                and due < as_of
                and all(not v or getattr(st, k) == v for k, v in want.items())
            ]
        found.sort(key=lambda t: (t[0], t[1]))
        return iter([OverdueItem(st, st.overdue(as_of)) for _, _, st in found[:limit]])

    def open_counts(self, as_of: int) -> list[OpenCount]:
        with self._lock:
            counts: dict[tuple[str, str, str, str], list[int]] = {}
            for st in self.states.values():
                if st.status != ev.OPEN:
                    continue
                c = counts.setdefault((st.township, st.colour, st.tier, st.owner_department), [0, 0])
                c[0] += 1
                due = st.next_due
                c[1] += int(due is not None and due < as_of)
        return [OpenCount(*k, open=n, overdue=o) for k, (n, o) in sorted(counts.items())]

    def outcomes(self, start: int, end: int) -> list[OutcomeRow]:
        rows: dict[str, dict[str, int]] = {}

        def add(twp: str, name: str) -> None:
            r = rows.setdefault(twp, {})
            r[name] = r.get(name, 0) + 1

        with self._lock:
            for m, st in self.states.items():
                first = self.first_received[m]
                if start <= first < end:
                    add(st.township, "received")
                for r in self.events_of.get(m, []):
                    e = r.event
                    if start <= e.occurred_at < end:
                        for name in ev.outcome_names(e.kind, e.actor_level, e.satisfaction):
                            add(st.township, name)
                if st.status == ev.OPEN and first < end:
                    add(st.township, "open_at_end")
                    due = st.next_due
                    if due is not None and due < end:
                        add(st.township, "overdue_at_end")
        return [OutcomeRow(township=t, **rows[t]) for t in sorted(rows)]

    def matter(self, matter_id: str) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for cid in self.members.get(matter_id, ()):
                c = self.complaints[cid]
                out.append(
                    {
                        "complaint_id": cid,
                        "received_at": c.received_at,
                        "channel": c.channel,
                        "point": c.point,
                        "level": c.level,
                        "decision_id": self.decisions.get(cid, ""),
                    }
                )
            return sorted(out, key=lambda r: (r["received_at"], r["complaint_id"]))

    def _delete(self, ids: set[str]) -> int:
        for cid in ids:
            c = self.complaints.pop(cid)
            m = self.matter_of.pop(cid)
            self.decisions.pop(cid, None)
            self.members[m].remove(cid)
            for _, h in c.identities:
                self.by_identity[h].discard(cid)
            if c.case_id:
                self.by_case[c.case_id].discard(cid)
            seq = self.seq_of.pop(cid)
            del self.by_seq[seq]
            if c.scope and c.signature:
                k = _match.bucket_of(c.received_at)
                self.buckets[c.scope][k] = _match.without(self.buckets[c.scope][k], {seq})
            for did in [d for d, f in self.decision_facts.get(m, {}).items() if f.complaint_id == cid]:
                del self.decision_facts[m][did]
                self.matter_of_decision.pop(did, None)
            left = [self.complaints[x] for x in self.members[m]]
            if not left:
                del self.members[m]
                self.firsts.pop(m, None)
                for r in self.events_of.pop(m, []):
                    self.event_by_key.pop(r.event.idempotency_key, None)
                for did in self.decision_facts.pop(m, {}):
                    self.matter_of_decision.pop(did, None)
                self.states.pop(m, None)
                self.first_received.pop(m, None)
            else:
                f = min(left, key=lambda x: x.received_at)
                old = self.firsts.get(m)
                self.firsts[m] = _match.First(f.received_at, f.point, f.level, old.owner if old else "")
                self._refresh_state(m)
        return len(ids)

    def purge(self, *, now: int | None = None) -> int:
        cutoff = (now_seconds() if now is None else now) - self.settings.retention_days * 86_400
        with self._lock:
            return self._delete({cid for cid, c in self.complaints.items() if c.received_at < cutoff})

    def forget(self, identity_hashes: tuple[str, ...]) -> int:
        with self._lock:
            ids: set[str] = set()
            for h in identity_hashes:
                ids.update(self.by_identity.get(h, ()))
            return self._delete(ids)

    def count_matters(self) -> int:
        with self._lock:
            return len(self.members)

    def close(self) -> None:
        pass
