"""``GuardedStore``: a store behind a deadline, with a local queue for what could not be written.

Every :meth:`record` answers within ``deadline_s`` (a few milliseconds): when the store is down, slow or
busy, the answer is :meth:`Recognition.unavailable` ("history unavailable") and the sighting is appended
to a queue file on local disk (one JSON line, written at once and fsynced by a background thread within
``retry_s``; hashes and signatures only, as in the store). A background thread writes the queue to the store once it answers again, oldest first. Nothing is
lost, and nothing is written twice: recording is idempotent by complaint id, so a sighting whose timed-out
call did reach the store is recognized as already there when the queue is replayed.

Queue files are per process (``pending-<pid>.jsonl`` in ``queue_dir``); a process holds an exclusive
``flock`` on its own. The drainer of any process also takes over the files of processes that are gone
(their lock is free), so a worker that died leaves nothing behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, Final, TypeVar

from fenliu.matter._core import (
    MatchSettings,
    MatterStore,
    Recognition,
    Sighting,
    StoreError,
    StoreUnavailable,
)
from fenliu.matter.events import (
    DecisionFacts,
    Event,
    EventRejected,
    MatterState,
    OpenCount,
    OutcomeRow,
    OverdueItem,
    RecordedEvent,
    UnknownMatter,
)

T = TypeVar("T")

__all__ = ["GuardedStore"]

_log = logging.getLogger(__name__)
#: Calls past their deadline a guard remembers, so as not to replay the copies they queued if they end well.
LATE_KEPT: Final = 10_000


class GuardedStore:
    """Wraps ``store`` so that recording never waits longer than ``deadline_s``.

    ``max_in_flight`` bounds the calls still running past their deadline; beyond it a call does not even
    try the store. ``retry_s`` is how often the queue is retried while the store fails.

    The event methods (:class:`~fenliu.matter.events.EventStore`) go to the store within
    ``event_deadline_s`` and are never queued: a store that does not answer in time raises
    :class:`StoreUnavailable` (the caller says so: UNAVAILABLE, and the frontend sends the event again
    with its idempotency key).
    """

    def __init__(
        self,
        store: MatterStore,
        queue_dir: str | os.PathLike[str],
        *,
        deadline_s: float = 0.010,
        max_in_flight: int = 4,
        retry_s: float = 0.5,
        event_deadline_s: float = 2.0,
    ) -> None:
        self.store = store
        self.settings: MatchSettings = store.settings
        self.deadline_s = deadline_s
        self.event_deadline_s = event_deadline_s
        self.retry_s = retry_s
        self.dir = Path(queue_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.unavailable = 0  # answers given without history
        self.queued = 0
        self.replayed = 0
        self._pool = cf.ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="matter-store")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._qlock = threading.Lock()
        # complaints queued at their deadline, with the call still writing them
        self._late: dict[str, cf.Future[Recognition]] = {}
        self._pid = os.getpid()
        self._own = self.dir / f"pending-{self._pid}.jsonl"
        self._fd = -1
        self._dirty = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drainer = threading.Thread(target=self._drain_loop, name="matter-queue", daemon=True)
        self._drainer.start()

    # -- recording

    def _submit(self, fn: Callable[[], T]) -> cf.Future[T]:
        """``fn()`` in the store's pool, holding one of the ``max_in_flight`` slots until it ends;
        :class:`StoreUnavailable` when every slot is taken (calls still running past their deadline)
        or the pool is shut down."""
        if not self._slots.acquire(blocking=False):
            raise StoreUnavailable("the matter store is busy")

        def call() -> T:
            try:
                return fn()
            finally:
                self._slots.release()

        try:
            return self._pool.submit(call)
        except RuntimeError:  # shut down
            self._slots.release()
            raise StoreUnavailable("the matter store is closed") from None

    def record(self, sighting: Sighting) -> Recognition:
        try:
            fut = self._submit(lambda: self.store.record(sighting))
        except StoreUnavailable:
            return self._defer(sighting)
        try:
            return fut.result(timeout=self.deadline_s)
        except cf.TimeoutError:
            # queued, and still being written: once that write ends well, the queued copy is not
            # replayed (a replay of every late write doubled the store's work when the machine was busy)
            with self._qlock:
                self._late[sighting.complaint_id] = fut
                while len(self._late) > LATE_KEPT:  # replayed before they ended: forget the oldest
                    del self._late[next(iter(self._late))]
            return self._defer(sighting)
        except (StoreError, OSError):
            return self._defer(sighting)
        except Exception as e:  # a driver error of any kind is the store's trouble, not the caller's
            _log.warning("matter store: %s", type(e).__name__)
            return self._defer(sighting)

    def _written_late(self, complaint_id: str) -> bool:
        """Whether the call that missed its deadline for this complaint has written it since (waiting
        for that call, within the deadline for events, when it is still running)."""
        with self._qlock:
            fut = self._late.pop(complaint_id, None)
        if fut is None:
            return False
        done, _ = cf.wait([fut], timeout=self.event_deadline_s)
        return bool(done) and not fut.cancelled() and fut.exception() is None

    def _defer(self, sighting: Sighting) -> Recognition:
        self.unavailable += 1
        self._append(sighting)
        self._wake.set()
        return Recognition.unavailable()

    def set_decision(self, facts: DecisionFacts) -> bool:
        """Write a decision's facts within the deadline, as a recording is: past it the write goes on in
        the store's thread (it lands when the store answers) and the call returns False, so a store
        that is locked or slow (a purge, a failover) never holds up the answer. Never raises."""
        try:
            return self._submit(lambda: self.store.set_decision(facts)).result(timeout=self.deadline_s)
        except Exception:  # busy, past the deadline (still being written), or the store's trouble
            return False

    # -- following matters: within a deadline, never queued

    def _within(self, fn: Callable[[], T]) -> T:
        fut = self._submit(fn)
        try:
            return fut.result(timeout=self.event_deadline_s)
        except cf.TimeoutError:
            raise StoreUnavailable("the matter store did not answer in time") from None
        except (StoreError, UnknownMatter, EventRejected):
            raise
        except Exception as e:  # a driver's error of any kind: the store's trouble
            _log.warning("matter store: %s", type(e).__name__)
            raise StoreUnavailable(f"the matter store failed ({type(e).__name__})") from None

    def record_event(self, event: Event) -> tuple[RecordedEvent, bool, MatterState]:
        return self._within(lambda: self.store.record_event(event))

    def events(self, matter_id: str) -> list[RecordedEvent]:
        return self._within(lambda: self.store.events(matter_id))

    def state(self, matter_id: str) -> MatterState | None:
        return self._within(lambda: self.store.state(matter_id))

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
        items = self._within(
            lambda: list(
                self.store.overdue(
                    as_of,
                    colour=colour,
                    tier=tier,
                    township=township,
                    owner_department=owner_department,
                    point=point,
                    limit=limit,
                )
            )
        )
        return iter(items)

    def open_counts(self, as_of: int) -> list[OpenCount]:
        return self._within(lambda: self.store.open_counts(as_of))

    def outcomes(self, start: int, end: int) -> list[OutcomeRow]:
        return self._within(lambda: self.store.outcomes(start, end))

    # -- the queue

    def _append(self, sighting: Sighting) -> None:
        line = (json.dumps(sighting.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._qlock:
            if self._fd < 0:
                self._fd = os.open(self._own, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.write(self._fd, line)  # in the kernel at once: a crash of this process loses nothing
            self._dirty = True
            self.queued += 1

    def pending(self) -> int:
        """Sightings waiting in this queue folder (all processes' files)."""
        n = 0
        for p in self.dir.glob("*.jsonl"):
            with suppress(OSError):
                n += sum(1 for ln in p.read_bytes().splitlines() if ln.strip())
        return n

    def _take_own(self) -> Path | None:
        """Move this process's queue aside (under its lock) so that new failures start a fresh file."""
        with self._qlock:
            if self._fd < 0:
                return None
            taken = self.dir / f"draining-{self._pid}-{time.monotonic_ns()}.jsonl"
            os.replace(self._own, taken)
            os.close(self._fd)  # releases the flock; the taken file is locked again below
            self._fd = -1
            return taken

    def drain(self) -> int:
        """Write every queued sighting to the store now; return how many. Stops at the first failure
        (what remains stays queued)."""
        own = self._take_own()
        files = sorted(self.dir.glob("*.jsonl"))
        if own is not None and own not in files:
            files.append(own)
        done = 0
        for path in files:
            if path == self._own:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live process's own file, or another drainer's
                    continue
                if not path.exists():
                    continue
                n = self._replay(path)
                if n < 0:
                    return done
                done += n
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return done

    def _replay(self, path: Path) -> int:
        n = 0
        for raw in path.read_bytes().splitlines():
            if not raw.strip():
                continue
            try:
                s = Sighting.from_json(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                _log.error("matter queue %s: an unreadable line was skipped", path.name)
                continue
            if self._written_late(s.complaint_id):
                n += 1
                self.replayed += 1
                continue
            try:
                self.store.record(s)
            except Exception as e:
                _log.info("matter store still unavailable (%s); %s stays queued", type(e).__name__, path.name)
                return -1
            n += 1
            self.replayed += 1
        return n

    def _sync(self) -> None:
        """fsync the queue file, off the answering path (a call must not wait for the disk)."""
        with self._qlock:
            fd = os.dup(self._fd) if self._dirty and self._fd >= 0 else -1
            self._dirty = False
        if fd >= 0:  # on a duplicate, outside the lock: appends go on meanwhile
            try:
                with suppress(OSError):
                    os.fsync(fd)
            finally:
                os.close(fd)

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_s)
            self._wake.clear()
            self._sync()
            if self._stop.is_set():
                break
            if any(self.dir.glob("*.jsonl")):
                with suppress(Exception):
                    self.drain()

    # -- the rest of the protocol, unguarded (operators' commands and reads)

    def matter(self, matter_id: str) -> list[dict[str, Any]]:
        return self.store.matter(matter_id)

    def purge(self, *, now: int | None = None) -> int:
        return self.store.purge(now=now)

    def forget(self, identity_hashes: tuple[str, ...]) -> int:
        return self.store.forget(identity_hashes)

    def count_matters(self) -> int:
        return self.store.count_matters()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._drainer.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._qlock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        self.store.close()
