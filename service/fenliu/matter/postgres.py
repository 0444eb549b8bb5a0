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
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
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
    docs/matters.md for what it costs and saves.
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
    ) -> None:
        self.settings = settings or MatchSettings()
        self.url = redact_url(url)
        self._timeout = pool_timeout_s
        self._sync = synchronous_commit
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"connect_timeout": max(1, round(connect_timeout_s)), "autocommit": False},
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
    def _tx(self) -> Iterator[psycopg.Cursor[TupleRow]]:
        try:
            with (
                self.pool.connection(timeout=self._timeout) as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                yield cur
        except PoolTimeout as e:
            raise StoreUnavailable(f"matter store {self.url}: no connection ({_one_line(e)})") from None
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"matter store {self.url}: {_one_line(e)}") from None

    def record(self, sighting: Sighting) -> Recognition:
        with self._tx() as cur:
            rec = _match.record(_PgTx(cur, synchronous_commit=self._sync), sighting, self.settings)
            if rec.new_matter:
                return rec
            return with_state(rec, _sql.read_state(cur, _sql.POSTGRESQL, rec.matter_id))

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


class _PgTx(_sql.SqlTx):
    """The recording's transaction on PostgreSQL. Its first step is one round trip (psycopg's pipeline
    mode): the advisory locks, then the complaint id, the identity and case-id candidates and the
    village's bucket records, each read by its own statement *after* the locks are held (in READ
    COMMITTED each statement sees what was committed when it starts, so the reads see whatever a
    recording that held the locks before committed)."""

    def __init__(self, cur: psycopg.Cursor[Any], *, synchronous_commit: bool) -> None:
        super().__init__(cur, _sql.POSTGRESQL, _no_lock)
        self._sync = synchronous_commit
        self._existing: tuple[str, tuple[str, int] | None] | None = None
        self._linked: tuple[tuple[str, int, int], list[_match.Candidate]] | None = None
        self._block: tuple[tuple[str, int, int], bytes] | None = None

    def start(self, s: Sighting, since: int, until: int) -> None:
        conn = self.cur.connection
        ids = sorted({lock_id(k) for k in s.lock_keys()})
        linked = self.linked_query(s, since, until)
        scope = (s.scope, _match.bucket_of(since), _match.bucket_of(until))
        with conn.pipeline():
            if not self._sync:
                conn.cursor().execute("SET LOCAL synchronous_commit = off")
            conn.cursor().execute(_LOCK, (ids,))
            c_exist = conn.cursor()
            c_exist.execute(self.q(self.EXISTING), (s.complaint_id,))
            c_linked = conn.cursor() if linked else None
            if c_linked is not None and linked is not None:
                c_linked.execute(self.q(linked[0]), linked[1])
            c_block = conn.cursor(binary=True) if s.scope and s.signature else None
            if c_block is not None:
                c_block.execute(self.q(self.SCOPE_BLOCK), scope)
        self._existing = (s.complaint_id, self.existing_of(c_exist.fetchall()))
        key = (s.complaint_id, since, until)
        self._linked = (key, self.candidates_of(c_linked.fetchall()) if c_linked is not None else [])
        if c_block is not None:
            self._block = (scope, self.block_of(c_block.fetchall()))

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


def _no_lock(keys: Sequence[str]) -> None:
    del keys  # _PgTx.start takes the locks


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
