"""``MemoryStore``: the matter store in one process's memory, for tests and measurements.

It runs the same recognition as the database stores (:mod:`fenliu.matter._match`) over plain dicts, under
one lock; it forgets everything when the process ends.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from fenliu.matter import _match
from fenliu.matter._core import MatchSettings, Recognition, Sighting, now_seconds

__all__ = ["MemoryStore"]


class _MemoryTx:
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

    def record(self, sighting: Sighting) -> Recognition:
        with self._lock:
            return _match.record(_MemoryTx(self), sighting, self.settings)

    def set_decision(self, complaint_id: str, decision_id: str, owner_department: str = "") -> bool:
        with self._lock:
            if complaint_id not in self.complaints:
                return False
            self.decisions[complaint_id] = decision_id
            m = self.matter_of[complaint_id]
            f = self.firsts.get(m)
            if owner_department and f is not None and not f.owner:
                self.firsts[m] = dataclasses.replace(f, owner=owner_department)
            return True

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
            left = [self.complaints[x] for x in self.members[m]]
            if not left:
                del self.members[m]
                self.firsts.pop(m, None)
            else:
                f = min(left, key=lambda x: x.received_at)
                old = self.firsts.get(m)
                self.firsts[m] = _match.First(f.received_at, f.point, f.level, old.owner if old else "")
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
