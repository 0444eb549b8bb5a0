"""``SQLiteStore``: the matter store in one SQLite file, shared by every worker of one server.

The file is in WAL mode (readers never wait for the writer). The WAL is checkpointed by a background
thread of each process (``PRAGMA wal_checkpoint(PASSIVE)`` every ``checkpoint_s``, on a connection of
its own), not by whichever recording happens to fill it: a recording never waits for a checkpoint. A recording is one ``BEGIN IMMEDIATE``
transaction: it takes the database's write lock before it looks anything up, so recordings by several
processes are serialized and the second of two that could link sees the first (one matter). Waiting for
that lock is bounded by ``busy_timeout``. Each process opens its own connection (a connection opened
before a ``fork`` is not used after it).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from fenliu.matter import _match, _sql
from fenliu.matter._core import MatchSettings, Recognition, Sighting, StoreError, now_seconds, with_state
from fenliu.matter.events import (
    DecisionFacts,
    Event,
    MatterState,
    OpenCount,
    OutcomeRow,
    OverdueItem,
    RecordedEvent,
)

__all__ = ["SQLiteStore"]


class SQLiteStore:
    """A :class:`~fenliu.matter.MatterStore` in the SQLite file ``path`` (created if missing)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        settings: MatchSettings | None = None,
        *,
        busy_timeout_s: float = 5.0,
        checkpoint_s: float = 0.5,
        cache_mib: int = 64,
        mmap_mib: int = 1024,
    ) -> None:
        self.settings = settings or MatchSettings()
        self.path = Path(path)
        self.url = f"sqlite://{self.path}" if self.path.is_absolute() else f"sqlite:{self.path}"
        self._busy_ms = int(busy_timeout_s * 1000)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._checkpoint_s = checkpoint_s
        self._cache_kib = cache_mib * 1024
        self._mmap_bytes = mmap_mib * 1024 * 1024
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._writer_fd = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._tx() as cur:
                self.applied = _sql.migrate(cur, _sql.SQLITE, self.url)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the matter store {self.url}: {e}") from None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # see _checkpoint_loop
            # reads from the mapped file and a larger page cache: a village's half-year of bucket
            # records and the index pages stay in memory instead of costing a read() each
            conn.execute(f"PRAGMA cache_size = -{self._cache_kib}")
            conn.execute(f"PRAGMA mmap_size = {self._mmap_bytes}")
            # one writer at a time across the processes that share the file, queued by the kernel: a
            # process waiting for SQLite's own lock sleeps 1, 2, 5, 10 … ms between tries, and two
            # workers recording at once missed their deadline by those sleeps
            if self._writer_fd >= 0:  # a forked child's inherited one shares the parent's lock
                os.close(self._writer_fd)
            self._writer_fd = os.open(
                f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            self._conn, self._pid = conn, os.getpid()
            self._stop = threading.Event()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="matter-checkpoint", daemon=True
            )
            self._checkpointer.start()
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            conn = self._connect()
            fcntl.flock(self._writer_fd, fcntl.LOCK_EX)
            try:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    conn.rollback()
                    raise
                else:
                    conn.commit()
            finally:
                fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def record(self, sighting: Sighting) -> Recognition:
        try:
            with self._tx() as cur:
                rec = _match.record(_sql.SqlTx(cur, _sql.SQLITE, _no_lock), sighting, self.settings)
                if rec.new_matter:
                    return rec
                return with_state(rec, _sql.read_state(cur, _sql.SQLITE, rec.matter_id))
        except sqlite3.Error as e:
            raise StoreError(f"matter store {self.url}: {e}") from None

    def set_decision(self, facts: DecisionFacts) -> bool:
        with self._tx() as cur:
            return _sql.set_decision(cur, _sql.SQLITE, facts)

    # -- following matters (EventStore)

    def record_event(self, event: Event) -> tuple[RecordedEvent, bool, MatterState]:
        with self._tx() as cur:
            return _sql.record_event(cur, _sql.SQLITE, event, now_seconds())

    def events(self, matter_id: str) -> list[RecordedEvent]:
        with self._tx() as cur:
            return _sql.matter_events(cur, _sql.SQLITE, matter_id)

    def state(self, matter_id: str) -> MatterState | None:
        with self._tx() as cur:
            return _sql.read_state(cur, _sql.SQLITE, matter_id)

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
            items = _sql.overdue(cur, _sql.SQLITE, as_of, filters, limit)
        return iter(items)

    def open_counts(self, as_of: int) -> list[OpenCount]:
        with self._tx() as cur:
            return _sql.open_counts(cur, _sql.SQLITE, as_of)

    def outcomes(self, start: int, end: int) -> list[OutcomeRow]:
        with self._tx() as cur:
            return _sql.outcomes(cur, _sql.SQLITE, start, end)

    def matter(self, matter_id: str) -> list[dict[str, Any]]:
        with self._tx() as cur:
            return _sql.matter_rows(cur, _sql.SQLITE, matter_id)

    def purge(self, *, now: int | None = None) -> int:
        with self._tx() as cur:
            return _sql.purge(cur, _sql.SQLITE, self.settings, now_seconds() if now is None else now)

    def forget(self, identity_hashes: tuple[str, ...]) -> int:
        with self._tx() as cur:
            return _sql.forget(cur, _sql.SQLITE, identity_hashes)

    def count_matters(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT count(*) FROM matters")
            return int(cur.fetchone()[0])

    def schema_version(self) -> int:
        with self._tx() as cur:
            return _sql.schema_version(cur)

    def load(self, items: Iterable[tuple[Sighting, str]]) -> int:
        """Bulk-load sightings already assigned to matters (one transaction; for imports and the bench).
        A sighting whose matter is new creates it; no recognition is run."""
        with self._tx() as cur:
            cur.execute("SELECT coalesce(max(seq), 0) FROM complaints")
            rows = _sql.bulk_rows(items, int(cur.fetchone()[0]))
            cur.executemany(
                "INSERT OR IGNORE INTO matters (matter_id, first_received_at, first_point, first_level) "
                "VALUES (?, ?, ?, ?)",
                rows.matters,
            )
            cur.executemany(
                "INSERT INTO complaints (seq, complaint_id, matter_id, received_at, channel, point, level, "
                "township, village, scope, case_id, decision_id, signature, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows.complaints,
            )
            cur.executemany("INSERT INTO identities VALUES (?, ?, ?, ?)", rows.identities)
            for scope, bucket, data in rows.buckets:
                cur.execute("SELECT data FROM scope_buckets WHERE scope = ? AND bucket = ?", (scope, bucket))
                old = cur.fetchone()
                cur.execute(
                    "INSERT OR REPLACE INTO scope_buckets VALUES (?, ?, ?)",
                    (scope, bucket, (bytes(old[0]) if old else b"") + data),
                )
        return len(rows.complaints)

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            while not self._stop.wait(self._checkpoint_s):
                with suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            mine = self._pid == os.getpid()
            self._stop.set()
            if self._checkpointer is not None and mine:
                self._checkpointer.join(timeout=5)
            if self._conn is not None and mine:
                self._conn.close()
            if self._writer_fd >= 0 and mine:
                os.close(self._writer_fd)
            self._writer_fd = -1
            self._conn = None


def _no_lock(keys: Sequence[str]) -> None:
    del keys  # BEGIN IMMEDIATE already holds the database's write lock
