"""The serving side of the matter store: open it as configured, run the matter step around each
decision, answer GetMatter, count what happened.

:func:`open_matters` builds a :class:`Matters` from a :class:`~fenliu.serving.config.ServeConfig` in each
serving process (every worker of one ``fenliu serve`` opens the same SQLite file, WAL, or the same
PostgreSQL): the store behind a :class:`~fenliu.matter.GuardedStore` (deadline, local queue) and the
:class:`~fenliu.matter.enricher.MatterEnricher`. With ``store_degraded_ok`` a store that cannot be reached at
start is retried in the background; meanwhile every decision says history was unavailable and its
sighting waits in the queue. Nothing here knows gRPC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from fenliu.domain.model import Complaint, Decision
from fenliu.matter import GuardedStore, MatchSettings, MatterStore, Recognition, StoreError, open_store
from fenliu.matter._core import Sighting, StoreUnavailable
from fenliu.matter.enricher import MatterEnricher, is_multi_door
from fenliu.matter.events import (
    DecisionFacts,
    Event,
    MatterState,
    OpenCount,
    OutcomeRow,
    OverdueItem,
    RecordedEvent,
)
from fenliu.serving.config import ServeConfig

if TYPE_CHECKING:
    from fenliu.serving.metrics import Metrics

__all__ = ["Matters", "check_store", "open_matters"]

log = logging.getLogger("fenliu.matters")

#: How often a store that could not be reached at start is tried again.
RETRY_SECONDS: Final = 2.0
#: How often each serving process reads the open and overdue matters into its gauges, and at most
#: how many overdue matters one reading counts.
FOLLOWUP_SECONDS: Final = 30.0
FOLLOWUP_LIMIT: Final = 100_000


def _settings(config: ServeConfig) -> MatchSettings:
    return MatchSettings(window_days=int(config.matter_window_days))


def hash_key(config: ServeConfig) -> bytes:
    """The identities' hash key: ``--store-key-file``, else the decision log's (file or environment)."""
    from fenliu.serving.decision_log import load_hash_key

    return load_hash_key(config.store_key_file or config.decision_log_key_file)


def check_store(config: ServeConfig) -> str | None:
    """Before any worker starts: open (and migrate) the store once, and read the key. ``None`` when it
    is usable, else the one-line reason. With ``store_degraded_ok`` an unreachable store is not a reason."""
    if not config.store:
        return None
    try:
        if config.matter_window_days <= 0 or config.store_deadline_ms <= 0:
            return "--matter-window-days and --store-deadline-ms must be positive"
        hash_key(config)
        store = open_store(config.store, _settings(config))
    except StoreError as e:
        if config.store_degraded_ok and _unreachable(e):
            log.warning("matter_store_unreachable_at_start", extra={"error": str(e)})
            return None
        return str(e)
    except (ValueError, OSError) as e:
        return str(e)
    store.close()
    return None


def _unreachable(e: StoreError) -> bool:
    """A store that may answer later (down, refused), not one that is wrong (a bad URL, a newer schema)."""
    return isinstance(e, StoreUnavailable) or str(e).startswith("cannot reach")


class _LateStore:
    """A store not reached at start: every call is unavailable until a background attempt opens it."""

    def __init__(self, url: str, settings: MatchSettings, on_open: Callable[[], None]) -> None:
        self.settings = settings
        self._url = url
        self._store: MatterStore | None = None
        self._on_open = on_open
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._retry, name="matter-store-open", daemon=True)
        self._thread.start()

    def _retry(self) -> None:
        while not self._stop.wait(RETRY_SECONDS):
            try:
                self._store = open_store(self._url, self.settings)
            except StoreError:
                continue
            log.info("matter_store_reached")
            self._on_open()
            return

    def _live(self) -> MatterStore:
        if self._store is None:
            raise StoreUnavailable("the matter store has not been reached yet")
        return self._store

    def record(self, sighting: Sighting) -> Recognition:
        return self._live().record(sighting)

    def set_decision(self, facts: DecisionFacts) -> bool:
        return self._live().set_decision(facts)

    def record_event(self, event: Event) -> tuple[RecordedEvent, bool, MatterState]:
        return self._live().record_event(event)

    def events(self, matter_id: str) -> list[RecordedEvent]:
        return self._live().events(matter_id)

    def state(self, matter_id: str) -> MatterState | None:
        return self._live().state(matter_id)

    def overdue(self, as_of: int, **filters: Any) -> Iterator[OverdueItem]:
        return self._live().overdue(as_of, **filters)

    def open_counts(self, as_of: int) -> list[OpenCount]:
        return self._live().open_counts(as_of)

    def outcomes(self, start: int, end: int) -> list[OutcomeRow]:
        return self._live().outcomes(start, end)

    def matter(self, matter_id: str) -> list[dict[str, Any]]:
        return self._live().matter(matter_id)

    def purge(self, *, now: int | None = None) -> int:
        return self._live().purge(now=now)

    def forget(self, identity_hashes: tuple[str, ...]) -> int:
        return self._live().forget(identity_hashes)

    def count_matters(self) -> int:
        return self._live().count_matters()

    def close(self) -> None:
        self._stop.set()
        if self._store is not None:
            self._store.close()


class Matters:
    """The matter step of one serving process. ``before``/``after`` never raise for the store's sake:
    a store that is down, slow or busy gives a decision whose history was unavailable."""

    def __init__(
        self, store: GuardedStore, key: bytes, *, metrics: Metrics | None = None, degraded: bool = False
    ) -> None:
        self.store = store
        self.enricher = MatterEnricher(store, key)
        self.metrics = metrics
        self.degraded = degraded
        self._listeners: list[Callable[[bool], None]] = []
        self._stop_followup = threading.Event()
        if metrics is not None:
            metrics.set_matter_store_degraded(degraded)

    def on_change(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(degraded)`` when the store is reached after a degraded start."""
        self._listeners.append(fn)

    def _reached(self) -> None:
        self.degraded = False
        if self.metrics is not None:
            self.metrics.set_matter_store_degraded(False)
        for fn in self._listeners:
            fn(False)

    def before(self, c: Complaint) -> tuple[Complaint, Recognition]:
        c2, rec, took = self.enricher.recognize(c)
        if self.metrics is not None:
            self.metrics.record_matter(
                c.region, available=rec.available, multi_door=is_multi_door(rec), seconds=took
            )
        return c2, rec

    def after(self, c: Complaint, decision: Decision, rec: Recognition) -> Decision:
        return self.enricher.after(c, decision, rec)

    def record_event(self, event: Event) -> tuple[RecordedEvent, bool, MatterState]:
        """Store one event (see :meth:`fenliu.matter.events.EventStore.record_event`), within the
        guard's deadline for events; never queued: a store that cannot answer raises
        :class:`StoreUnavailable` and the frontend sends the event again with its idempotency key."""
        stored, recorded, state = self.store.record_event(event)
        if self.metrics is not None:
            self.metrics.observe_event(event.kind, recorded, state)
        return stored, recorded, state

    def refresh_followup(self, now: int | None = None) -> bool:
        """Read the open and overdue matters from the store into the gauges (an index range for the
        overdue, a grouped count for the open); False when the store could not be read."""
        if self.metrics is None:
            return False
        as_of = int(time.time()) if now is None else now
        try:
            counts = self.store.open_counts(as_of)
            overdue = list(self.store.overdue(as_of, limit=FOLLOWUP_LIMIT))
        except StoreError as e:
            log.warning("followup_unreadable", extra={"error_type": type(e).__name__})
            return False
        self.metrics.set_followup(counts, overdue)
        return True

    def start_followup(self, every_s: float = FOLLOWUP_SECONDS) -> None:
        """Refresh the follow-up gauges every ``every_s`` seconds in a daemon thread."""

        def loop() -> None:
            while not self._stop_followup.wait(every_s):
                self.refresh_followup()

        self.refresh_followup()
        threading.Thread(target=loop, name="matter-followup", daemon=True).start()

    def overdue(self, as_of: int, **filters: Any) -> Iterator[OverdueItem]:
        return self.store.overdue(as_of, **filters)

    def history(self, matter_id: str) -> tuple[list[RecordedEvent], MatterState | None] | None:
        """A matter's events and state, ``None`` when the store cannot be read (logged by its kind)."""
        try:
            return self.store.events(matter_id), self.store.state(matter_id)
        except Exception as e:
            log.warning("matter_store_unreadable", extra={"error_type": type(e).__name__})
            return None

    def complaints(self, matter_id: str) -> list[dict[str, Any]] | None:
        """A matter's complaints (no personal data), ``[]`` for an unknown matter, ``None`` when the store
        cannot be read (logged by its kind only)."""
        try:
            return self.store.matter(matter_id)
        except Exception as e:
            log.warning("matter_store_unreadable", extra={"error_type": type(e).__name__})
            return None

    def close(self) -> None:
        self._stop_followup.set()
        self.store.close()


def open_matters(config: ServeConfig, *, metrics: Metrics | None = None) -> Matters | None:
    """The configured matter step, or ``None`` without ``--store``. Raises :class:`StoreError` (or
    ``ValueError`` for the key) with a one-line message when it cannot serve."""
    if not config.store:
        return None
    key = hash_key(config)
    settings = _settings(config)
    degraded = False
    late: _LateStore | None = None
    try:
        store: MatterStore = open_store(config.store, settings)
    except StoreError as e:
        if not (config.store_degraded_ok and _unreachable(e)):
            raise
        holder: list[Matters] = []
        late = _LateStore(config.store, settings, lambda: holder[0]._reached() if holder else None)
        store = late
        degraded = True
    guarded = GuardedStore(store, config.queue_dir(), deadline_s=float(config.store_deadline_ms) / 1000.0)
    matters = Matters(guarded, key, metrics=metrics, degraded=degraded)
    if late is not None:
        holder.append(matters)
    return matters
