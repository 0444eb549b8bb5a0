"""``PostgresStore``: the matter store in PostgreSQL, shared by replicas on several machines.

Through psycopg 3 and a ``psycopg_pool.ConnectionPool``. A recording is one transaction that first takes
transaction-level advisory locks (``pg_advisory_xact_lock``) on the sighting's lock keys, in sorted
order (so two recordings never wait for each other in a cycle): two recordings that could link — same
complaint id, identity hash, case id or township — are serialized, and the second sees the first (one
matter), while unrelated recordings run side by side. The locks go with the transaction.

Migrations run at open under an advisory lock of their own, so replicas starting together migrate once.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from fenliu.matter import _match, _sql
from fenliu.matter._core import (
    MatchSettings,
    Recognition,
    Sighting,
    StoreError,
    StoreUnavailable,
    now_seconds,
    with_state,
)
from fenliu.matter.events import (
    DecisionFacts,
    Event,
    MatterState,
    OpenCount,
    OutcomeRow,
    OverdueItem,
    RecordedEvent,
)

__all__ = ["PostgresStore", "redact_url"]

_MIGRATION_LOCK: Final = 0x66656E6C6975  # "fenliu"


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def lock_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


class PostgresStore:
    """A :class:`~fenliu.matter.MatterStore` in the PostgreSQL database at ``url``.

    ``pool_timeout_s`` bounds the wait for a connection (a down server fails in that time);
    ``connect_timeout_s`` each connection attempt. ``synchronous_commit=False`` lets a recording's commit
    return before the server has flushed it to disk (``SET LOCAL synchronous_commit = off``): a crash of
    the *server* may then lose the last fraction of a second of recordings (never corrupt them); see
    docs/matters.md for what it costs and saves. ``bucket_cache_bytes`` bounds this process's copies of
    village buckets (:class:`BucketCache`; 0: none).
    """

    def __init__(
        self,
        url: str,
        settings: MatchSettings | None = None,
        *,
        min_size: int = 1,
        max_size: int = 4,
        pool_timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        synchronous_commit: bool = True,
        bucket_cache_bytes: int = 16 << 20,
    ) -> None:
        self.settings = settings or MatchSettings()
        self.buckets = BucketCache(bucket_cache_bytes)
        self.url = redact_url(url)
        self._timeout = pool_timeout_s
        self._sync = synchronous_commit
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"connect_timeout": max(1, round(connect_timeout_s)), "autocommit": True},
            open=False,
            name="fenliu-matters",
        )
        try:
            # one direct attempt first: an unreachable store is said at once, in the driver's own words
            psycopg.connect(url, connect_timeout=max(1, round(connect_timeout_s)), autocommit=True).close()
            self.pool.open(wait=True, timeout=pool_timeout_s)
            with self._tx() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                self.applied = _sql.migrate(cur, _sql.POSTGRESQL, self.url)
        except StoreError:
            self.pool.close()
            raise
        except (psycopg.Error, PoolTimeout) as e:
            self.pool.close()
            raise StoreError(f"cannot reach the matter store {self.url}: {_one_line(e)}") from None

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """A connection of the pool (in autocommit: each use says where its transaction runs)."""
        try:
            with self.pool.connection(timeout=self._timeout) as conn:
                yield conn
        except PoolTimeout as e:
            raise StoreUnavailable(f"matter store {self.url}: no connection ({_one_line(e)})") from None
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"matter store {self.url}: {_one_line(e)}") from None

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[TupleRow]]:
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def record(self, sighting: Sighting) -> Recognition:
        # Not in conn.transaction(): _PgTx sends BEGIN with its first reads and COMMIT with its last
        # writes (three round trips at most, see _PgTx); anything left open is rolled back here.
        with self._conn() as conn:
            tx = _PgTx(conn.cursor(), synchronous_commit=self._sync, buckets=self.buckets)
            try:
                rec = _match.record(tx, sighting, self.settings)
            finally:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
            return rec if rec.new_matter else with_state(rec, tx.state)

    def set_decision(self, facts: DecisionFacts) -> bool:
        with self._tx() as cur:
            return _sql.set_decision(cur, _sql.POSTGRESQL, facts)

    # -- following matters (EventStore): each write under the matter's row lock (SELECT … FOR UPDATE),
    # so that two events on one matter serialize and the second folds the first

    def record_event(self, event: Event) -> tuple[RecordedEvent, bool, MatterState]:
        with self._tx() as cur:
            return _sql.record_event(cur, _sql.POSTGRESQL, event, now_seconds())

    def events(self, matter_id: str) -> list[RecordedEvent]:
        with self._tx() as cur:
            return _sql.matter_events(cur, _sql.POSTGRESQL, matter_id)

    def state(self, matter_id: str) -> MatterState | None:
        with self._tx() as cur:
            return _sql.read_state(cur, _sql.POSTGRESQL, matter_id)

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
        filters = {
            "colour": colour,
            "tier": tier,
            "township": township,
            "owner_department": owner_department,
            "point": point,
        }
        with self._tx() as cur:
            items = _sql.overdue(cur, _sql.POSTGRESQL, as_of, filters, limit)
        return iter(items)

    def open_counts(self, as_of: int) -> list[OpenCount]:
        with self._tx() as cur:
            return _sql.open_counts(cur, _sql.POSTGRESQL, as_of)

    def outcomes(self, start: int, end: int) -> list[OutcomeRow]:
        with self._tx() as cur:
            return _sql.outcomes(cur, _sql.POSTGRESQL, start, end)

    def matter(self, matter_id: str) -> list[dict[str, Any]]:
        with self._tx() as cur:
            return _sql.matter_rows(cur, _sql.POSTGRESQL, matter_id)

    def purge(self, *, now: int | None = None) -> int:
        with self._tx() as cur:
            return _sql.purge(cur, _sql.POSTGRESQL, self.settings, now_seconds() if now is None else now)

    def forget(self, identity_hashes: tuple[str, ...]) -> int:
        with self._tx() as cur:
            return _sql.forget(cur, _sql.POSTGRESQL, identity_hashes)

    def count_matters(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT count(*) FROM matters")
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def schema_version(self) -> int:
        with self._tx() as cur:
            return _sql.schema_version(cur)

    def load(self, items: Iterable[tuple[Sighting, str]]) -> int:
        """Bulk-load sightings already assigned to matters with COPY (for imports and the bench).
        A sighting whose matter is new creates it; no recognition is run; buckets must be new."""
        with self._tx() as cur:
            cur.execute("SELECT coalesce(max(seq), 0) FROM complaints")
            row = cur.fetchone()
            rows = _sql.bulk_rows(items, int(row[0]) if row else 0)
            for table, data in (
                ("matters (matter_id, first_received_at, first_point, first_level)", rows.matters),
                ("complaints", rows.complaints),
                ("identities", rows.identities),
                ("scope_buckets", rows.buckets),
            ):
                with cur.copy(f"COPY {table} FROM STDIN") as cp:
                    for r in data:
                        cp.write_row(r)
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('complaints', 'seq'), "
                "(SELECT coalesce(max(seq), 1) FROM complaints))"
            )
        return len(rows.complaints)

    def close(self) -> None:
        self.pool.close()


_LOCK: Final = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS t(k)"


class BucketCache:
    """This process's copies of scope buckets, each with the row version (``xmin``) it was read at.

    A recording asks the server for a village's buckets and sends the versions it holds: the server
    sends the data only of the buckets whose row changed since (a new complaint, ``forget``, another
    replica's write: every write of a row makes a new version) and of those not held; a purged bucket
    is simply no longer listed. So a copy is never used stale, and a closed week is read from the server
    once per process instead of at every recording. Bounded by bytes, least recently used out first."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        # scope -> bucket -> (version, data); scopes least recently used first
        self._scopes: OrderedDict[str, dict[int, tuple[str, bytes]]] = OrderedDict()
        self._lock = threading.Lock()

    def held(self, scope: str, first: int, last: int) -> dict[int, tuple[str, bytes]]:
        """The copies held of the scope's buckets in that range (bucket -> (version, data))."""
        with self._lock:
            got = self._scopes.get(scope)
            if not got:
                return {}
            self._scopes.move_to_end(scope)
            return {b: v for b, v in got.items() if first <= b <= last}

    def update(self, scope: str, read: dict[int, tuple[str, bytes]], first: int, last: int) -> None:
        """Hold ``read`` (the buckets just read) for the scope; in that range, nothing else is current."""
        if self.max_bytes <= 0:
            return
        with self._lock:
            mine = self._scopes.pop(scope, {})
            for b in [b for b in mine if first <= b <= last and b not in read]:  # gone from the server
                self.size -= len(mine.pop(b)[1])
            for b, v in read.items():
                old = mine.get(b)
                self.size += len(v[1]) - (len(old[1]) if old else 0)
                mine[b] = v
            self._scopes[scope] = mine
            while self.size > self.max_bytes and self._scopes:
                _, gone = self._scopes.popitem(last=False)
                self.size -= sum(len(d) for _, d in gone.values())


class _PgTx(_sql.SqlTx):
    """A recording's transaction on PostgreSQL, in at most three round trips (psycopg's pipeline mode) on
    a connection in autocommit:

    1. ``BEGIN``, the advisory locks, then the complaint id, the identity and case-id candidates and the
       village's bucket records, each read by its own statement *after* the locks are held (in READ
       COMMITTED each statement sees what was committed when it starts, so the reads see whatever a
       recording that held the locks before committed);
    2. only when the village has alike complaints not found already: their rows (``by_seq``);
    3. the ending (``again``, ``open_matter`` or ``join``): the matter's history as it was, the first
       receiver moved when this complaint is earlier, the complaint written, the matter's state read,
       and ``COMMIT``.
    """

    def __init__(
        self, cur: psycopg.Cursor[Any], *, synchronous_commit: bool, buckets: BucketCache | None = None
    ) -> None:
        super().__init__(cur, _sql.POSTGRESQL, _no_lock)
        self._sync = synchronous_commit
        self._buckets = buckets if buckets is not None else BucketCache(0)
        self._existing: tuple[str, tuple[str, int] | None] | None = None
        self._linked: tuple[tuple[str, int, int], list[_match.Candidate]] | None = None
        self._block: tuple[tuple[str, int, int], bytes] | None = None
        #: the matter's state as the ending read it (None for a new matter, or one not yet decided)
        self.state: MatterState | None = None

    def start(self, s: Sighting, since: int, until: int) -> None:
        conn = self.cur.connection
        ids = sorted({lock_id(k) for k in s.lock_keys()})
        linked = self.linked_query(s, since, until)
        scope = (s.scope, _match.bucket_of(since), _match.bucket_of(until))
        with conn.pipeline():
            conn.cursor().execute("BEGIN")
            if not self._sync:
                conn.cursor().execute("SET LOCAL synchronous_commit = off")
            conn.cursor().execute(_LOCK, (ids,))
            c_exist = conn.cursor()
            c_exist.execute(self.q(self.EXISTING), (s.complaint_id,))
            c_linked = conn.cursor() if linked else None
            if c_linked is not None and linked is not None:
                c_linked.execute(self.q(linked[0]), linked[1])
            c_block = conn.cursor(binary=True) if s.scope and s.signature else None
            held: dict[int, tuple[str, bytes]] = {}
            if c_block is not None:
                held = self._buckets.held(*scope)
                known = sorted(held)
                c_block.execute(_BLOCK, (known, [held[b][0] for b in known], *scope))
        self._existing = (s.complaint_id, self.existing_of(c_exist.fetchall()))
        key = (s.complaint_id, since, until)
        self._linked = (key, self.candidates_of(c_linked.fetchall()) if c_linked is not None else [])
        if c_block is not None:
            self._block = (scope, self._assemble(scope, held, c_block.fetchall()))

    def _assemble(
        self, scope: tuple[str, int, int], held: dict[int, tuple[str, bytes]], rows: list[Any]
    ) -> bytes:
        """The block from the rows (bucket, version, data or NULL when the copy held is current)."""
        parts = []
        read: dict[int, tuple[str, bytes]] = {}
        for bucket, version, data in rows:
            b = int(bucket)
            read[b] = held[b] if data is None else (str(version), bytes(data))
            parts.append(read[b][1])
        self._buckets.update(scope[0], read, scope[1], scope[2])
        return b"".join(parts)

    def existing(self, complaint_id: str) -> tuple[str, int] | None:
        if self._existing is not None and self._existing[0] == complaint_id:
            return self._existing[1]
        return super().existing(complaint_id)

    def linked(self, s: Sighting, since: int, until: int) -> list[_match.Candidate]:
        if self._linked is not None and self._linked[0] == (s.complaint_id, since, until):
            return self._linked[1]
        return super().linked(s, since, until)

    def scope_block(self, scope: str, first_bucket: int, last_bucket: int) -> bytes:
        if self._block is not None and self._block[0] == (scope, first_bucket, last_bucket):
            return self._block[1]
        return super().scope_block(scope, first_bucket, last_bucket)

    def by_seq(self, seqs: Sequence[int]) -> list[_match.Candidate]:
        # one statement text for any number of seqs (prepared once), signatures read in binary
        self.cur.execute(_BY_SEQ, (list(seqs),), binary=True)
        return self.candidates_of(self.cur.fetchall())

    # -- the endings: one round trip each, with the commit

    def again(self, matter_id: str, since: int, until: int) -> tuple[list[_match.Row], _match.First | None]:
        conn = self.cur.connection
        with conn.pipeline():
            c_hist = conn.cursor()
            c_hist.execute(self.q(self.HISTORY), (since, until, matter_id))
            c_state = conn.cursor()
            c_state.execute(_STATE, (matter_id,))
            conn.cursor().execute("COMMIT")
        self.state = _state_of(c_state.fetchall())
        return self.history_of(c_hist.fetchall())

    def open_matter(self, matter_id: str, s: Sighting) -> None:
        conn = self.cur.connection
        with conn.pipeline():
            conn.cursor().execute(self.q(self.NEW_MATTER), (matter_id, s.received_at, s.point, s.level))
            conn.cursor().execute(_sql.PG_INSERT_ALL, _sql.pg_insert_params(s, matter_id))
            conn.cursor().execute("COMMIT")

    def join(
        self, matter_id: str, s: Sighting, since: int, until: int
    ) -> tuple[list[_match.Row], _match.First | None]:
        conn = self.cur.connection
        with conn.pipeline():
            c_hist = conn.cursor()
            c_hist.execute(self.q(self.HISTORY), (since, until, matter_id))
            conn.cursor().execute(_EARLIER_FIRST, (s.received_at, s.point, s.level, matter_id, s.received_at))
            conn.cursor().execute(_sql.PG_INSERT_ALL, _sql.pg_insert_params(s, matter_id))
            c_state = conn.cursor()
            c_state.execute(_STATE, (matter_id,))
            conn.cursor().execute("COMMIT")
        self.state = _state_of(c_state.fetchall())
        return self.history_of(c_hist.fetchall())


#: a scope's buckets in a range, newest first; the data only where the version held (if any) is not current
_BLOCK: Final = (
    "SELECT b.bucket, b.xmin::text, CASE WHEN k.v = b.xmin::text THEN NULL ELSE b.data END "
    "FROM scope_buckets b LEFT JOIN unnest(%s::bigint[], %s::text[]) AS k(bucket, v) ON k.bucket = b.bucket "
    "WHERE b.scope = %s AND b.bucket BETWEEN %s AND %s ORDER BY b.bucket DESC"
)
_BY_SEQ: Final = (
    f"SELECT '' AS tag, {_sql.CANDIDATE_COLUMNS} FROM complaints c WHERE c.seq = ANY(%s::bigint[])"
)
_STATE: Final = "SELECT data FROM matter_state WHERE matter_id = %s"
#: the first receiver moves to a complaint received before the matter's first (a backdated one)
_EARLIER_FIRST: Final = (
    "UPDATE matters SET first_received_at = %s, first_point = %s, first_level = %s "
    "WHERE matter_id = %s AND first_received_at > %s"
)


def _state_of(rows: list[Any]) -> MatterState | None:
    return MatterState.from_json(json.loads(str(rows[0][0]))) if rows else None


def _no_lock(keys: Sequence[str]) -> None:
    del keys  # _PgTx.start takes the locks


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
