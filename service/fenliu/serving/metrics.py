"""Prometheus metrics: gRPC server metrics, what fenliu decides, and the state of its rule pack.

Every metric is listed, with its type, labels and meaning, in ``docs/metrics.md``.

State
    Every value lives in a :class:`Metrics` object and the ``CollectorRegistry`` it owns (never
    prometheus_client's default registry); this module keeps no mutable state of its own (its
    module-level names are constants and compiled patterns). A serving process makes one
    :class:`Metrics` and passes it to whatever records; tests make their own.

Several worker processes
    The supervisor calls :func:`prepare_multiprocess` *before* it spawns workers. That points
    ``PROMETHEUS_MULTIPROC_DIR`` at an empty folder; every process (the supervisor too) then keeps its
    values in memory-mapped files there, and :meth:`Metrics.start_http`, in the supervisor, serves the
    sum over all of them (prometheus_client's multiprocess mode). When a worker exits, the supervisor
    calls :meth:`Metrics.mark_worker_dead` so that its live gauges stop counting. Without
    :func:`prepare_multiprocess` the metrics live in their :class:`Metrics` object only (tests, a single
    process).

Labels
    Label values come only from codes: the pack's category, exclusion and rule ids, the enumerations
    of ``fenliu.domain.model``, gRPC method names the server registered. A value that does not look like a
    code, or is not one of the current pack's codes when the pack is known (:meth:`Metrics.set_pack`
    with a :class:`fenliu.packs.load.Pack`), or would push a label past its cardinality limit, is counted
    as ``"other"``. No free text and no personal data ever becomes a label value.

Wiring (who calls what)
    - supervisor: :func:`prepare_multiprocess` (or ``Metrics()`` with one process),
      :meth:`Metrics.start_http`, :meth:`Metrics.mark_worker_dead`, :meth:`Metrics.record_worker_restart`,
      and :meth:`Metrics.record_reload` if the supervisor vets new packs;
    - each serving process: ``create_server(..., observers=[m.observer],
      interceptors=[m.server_interceptor()])``, :meth:`Metrics.watch` on its ``Triage``,
      :meth:`Metrics.record_reload` if it swaps packs itself, :class:`TimedTriage` around the engine,
      :meth:`Metrics.record_matter` in the matter step and :meth:`Metrics.record_decision_log_error` in
      the decision log; :meth:`Metrics.observe_event` for each event recorded on a matter and
      :meth:`Metrics.set_followup` from the matter step's refresher (``serving/matters.py``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import start_http_server

from fenliu.domain import model

if TYPE_CHECKING:
    from fenliu.engine.decider import Decider
    from fenliu.matter.events import MatterState, OpenCount, OverdueItem
    from fenliu.serving.runtime import PackInfo, ReloadAttempt, ReloadResult, Triage
    from fenliu.serving.server import Continuation

_T = TypeVar("_T")

__all__ = [
    "MULTIPROC_ENV",
    "NONE",
    "OTHER",
    "Metrics",
    "TimedTriage",
    "is_local",
    "prepare_multiprocess",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

# ``*_created`` samples double the exposition and do not exist in multiprocess mode: none, in either mode.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The label value that stands for anything unexpected.
OTHER: Final = "other"
#: The label value of an empty field (``approach`` and ``exclusion`` of some decisions).
NONE: Final = "none"

#: Seconds. Decisions take well under a millisecond when memoized, a few ms when not.
DECISION_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
#: Seconds. A streaming call lasts as long as its stream, hence the long tail.
GRPC_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

# What a code looks like. Chinese text, spaces, digits-first ids, anything long: not a code.
_CODE_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_RULE_RE: Final = re.compile(r"[a-z0-9_]{1,64}(?:\.[a-z0-9_]{1,64}){0,7}\Z")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,79}\Z")
_GRPC_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}\Z")

_CHILD_CACHE: Final = 4096

# Distinct values a label may take in one process before further new values count as OTHER.
_LIMITS: Final = {
    "category": 64,
    "exclusion": 16,
    "rule": 2000,
    "layer": 16,
    "grpc_service": 32,
    "grpc_method": 128,
    "pack": 1000,
    "township": 256,
}
#: A township label: a 9-digit township code (a village's 12-digit code gives its first 9), never finer.
_TOWNSHIP_RE: Final = re.compile(r"[0-9]{9}\Z")


class _Clamp:
    """Keeps a label's values to codes, and their number bounded."""

    def __init__(self, pattern: re.Pattern[str], limit: int) -> None:
        self._pattern = pattern
        self._limit = limit
        self._seen: set[str] = set()
        self._allowed: frozenset[str] | None = None
        self._lock = threading.Lock()

    def allow(self, allowed: Iterable[str] | None) -> None:
        with self._lock:
            self._allowed = None if allowed is None else frozenset(allowed)
            if self._allowed is not None:
                self._seen = self._seen & self._allowed

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if not isinstance(value, str) or not self._pattern.match(value):
            return OTHER
        with self._lock:
            if self._allowed is not None and value not in self._allowed:
                return OTHER
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
        return value


def _enum(value: str, allowed: tuple[str, ...]) -> str:
    if not value or value == "NONE":
        return NONE
    return value if value in allowed else OTHER


class Metrics:
    """All of fenliu's metrics in one registry this object owns, and what records them.

    A serving process makes one (the supervisor one of its own) and hands it to what records: the
    servicer (:meth:`observer`, :meth:`server_interceptor`), the engine (:class:`TimedTriage`), the
    reload path (:meth:`record_reload`), the matter step (:meth:`record_matter`) and the decision log
    (:meth:`record_decision_log_error`). Tests make their own. In multiprocess mode
    (:func:`prepare_multiprocess` called first) the values go to the shared folder and
    :meth:`registry` is the sum over every process's.
    """

    def __init__(self) -> None:
        self.folder = _multiproc_dir()
        r = self.own_registry = CollectorRegistry(auto_describe=True)
        grpc_labels = ("grpc_type", "grpc_service", "grpc_method")
        self.grpc_started = Counter(
            "grpc_server_started", "Total number of RPCs started on the server.", grpc_labels, registry=r
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*grpc_labels, "grpc_code"),
            registry=r,
        )
        self.grpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled "
            "by the server.",
            grpc_labels,
            buckets=GRPC_BUCKETS,
            registry=r,
        )
        self.grpc_received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            grpc_labels,
            registry=r,
        )
        self.grpc_sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            grpc_labels,
            registry=r,
        )
        self.decisions = Counter(
            "fenliu_decisions",
            "Decisions made, by category, colour, tier, approach, funnel stage and exclusion.",
            ("category", "color", "tier", "approach", "stage", "excluded", "exclusion"),
            registry=r,
        )
        self.decision_errors = Counter(
            "fenliu_decision_errors",
            "Items (single calls or stream items) that got no decision, by gRPC method and status code.",
            ("grpc_method", "grpc_code"),
            registry=r,
        )
        self.rule_firings = Counter(
            "fenliu_rule_firings",
            "Rules that fired, by rule id and pack layer.",
            ("rule", "layer"),
            registry=r,
        )
        self.decision_seconds = Histogram(
            "fenliu_decision_seconds",
            "Time the engine took to decide one complaint (seconds).",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.pack_info = Gauge(
            "fenliu_pack_info",
            "1 for the rule pack (name, revision, digest) a live process decides with; "
            "0 for one it used before.",
            ("name", "revision", "digest"),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.pack_loaded = Gauge(
            "fenliu_pack_loaded",
            "1 when a live fenliu process has a rule pack loaded and can decide, else 0.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.pack_reloads = Counter(
            "fenliu_pack_reloads",
            "Attempts to replace the rule pack, by outcome (ok, refused).",
            ("outcome",),
            registry=r,
        )
        self.worker_restarts = Counter(
            "fenliu_worker_restarts",
            "Worker processes replaced by the supervisor, by reason (crashed, rolled).",
            ("reason",),
            registry=r,
        )
        self.decision_log_errors = Counter(
            "fenliu_decision_log_errors",
            "Decision-log lines that could not be written.",
            registry=r,
        )
        self.matter_unavailable = Counter(
            "fenliu_matter_history_unavailable",
            "Decisions made without the matter's history (the store down, slow or busy), by township.",
            ("township",),
            registry=r,
        )
        self.matter_multi_door = Counter(
            "fenliu_matter_multi_door_decisions",
            "Decisions on a matter seen through two or more channels or receiving points (多头访), by township.",
            ("township",),
            registry=r,
        )
        self.matter_store_seconds = Histogram(
            "fenliu_matter_store_seconds",
            "Time to look up and record a complaint in the matter store (within its deadline).",
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.matter_store_degraded = Gauge(
            "fenliu_matter_store_degraded",
            "1 when a live process serves without its matter store (it started degraded), else 0.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.matter_events = Counter(
            "fenliu_matter_events",
            "Events recorded on matters (RecordEvent, RecordEvents; repeats not counted), by kind.",
            ("kind",),
            registry=r,
        )
        self.matters_resolved = Counter(
            "fenliu_matters_resolved",
            "Matters resolved, by the level that resolved them and township (once per resolution).",
            ("level", "township"),
            registry=r,
        )
        self.matters_open = Gauge(
            "fenliu_matters_open",
            "Open matters, by colour, tier, owner department and township (read from the matter store "
            "every FOLLOWUP_SECONDS by each process; the newest reading is shown).",
            ("color", "tier", "owner_department", "township"),
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.matters_overdue = Gauge(
            "fenliu_matters_overdue",
            "Open matters past a deadline without the event that meets it, by deadline "
            "(first_contact_by, plan_by, accept_by, resolve_by), colour, tier, owner department and township.",
            ("deadline", "color", "tier", "owner_department", "township"),
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.followup_keys: tuple[set[tuple[str, ...]], set[tuple[str, ...]]] = (set(), set())
        self.township = _Clamp(_TOWNSHIP_RE, _LIMITS["township"])
        # Series that alerts take increase() of exist from the start, at 0.
        for outcome in ("ok", "refused"):
            self.pack_reloads.labels(outcome=outcome)
        for reason in ("crashed", "rolled"):
            self.worker_restarts.labels(reason=reason)

        self.category = _Clamp(_CODE_RE, _LIMITS["category"])
        self.category_owner = _Clamp(_CODE_RE, _LIMITS["category"])
        self.exclusion = _Clamp(_CODE_RE, _LIMITS["exclusion"])
        self.rule = _Clamp(_RULE_RE, _LIMITS["rule"])
        self.layer = _Clamp(_CODE_RE, _LIMITS["layer"])
        self.grpc_service = _Clamp(_GRPC_NAME_RE, _LIMITS["grpc_service"])
        self.grpc_method = _Clamp(_GRPC_NAME_RE, _LIMITS["grpc_method"])
        self.pack_token = _Clamp(_TOKEN_RE, _LIMITS["pack"])

        # raw label values -> metric child: skips clamping and labels() on the hot path
        self.decision_children: dict[tuple[str, str, str, str, str, bool, str], Counter] = {}
        self.firing_children: dict[tuple[str, str], Counter] = {}

        self.pack_lock = threading.Lock()
        self.current_pack: tuple[str, str, str] | None = None

    # ------------------------------------------------------------------------------------------------
    # Exposition

    def registry(self) -> CollectorRegistry:
        """The registry to expose: the sum over all processes in multiprocess mode, else this object's."""
        if self.folder is None:
            return self.own_registry
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg, path=self.folder)  # type: ignore[no-untyped-call]
        return reg

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format, as the HTTP endpoint serves them."""
        return generate_latest(self.registry())

    def start_http(
        self,
        address: str,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        client_cafile: str | None = None,
    ) -> tuple[WSGIServer, int]:
        """Serve ``/metrics`` on ``address`` (``HOST:PORT``; ``:PORT`` is 127.0.0.1; port 0 picks a free
        one) in a daemon thread; HTTPS with ``certfile`` and ``keyfile``, requiring a client certificate
        signed by ``client_cafile`` when given.

        Returns ``(server, port)``; stop with ``server.shutdown(); server.server_close()``.
        """
        host, port = _split_address(address)
        server, _thread = start_http_server(
            port,
            addr=host,
            registry=self.registry(),
            certfile=certfile,
            keyfile=keyfile,
            client_cafile=client_cafile,
            client_auth_required=client_cafile is not None,
        )
        return server, int(server.server_port)

    def mark_worker_dead(self, pid: int) -> None:
        """Forget the live gauges of a worker process that has exited (its counters are kept)."""
        if self.folder is not None:
            multiprocess.mark_process_dead(pid, self.folder)  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------------------------------------
    # Decisions

    def observe_decision(self, decision: model.Decision, seconds: float | None = None) -> None:
        """Count one decision and the rules that fired for it; ``seconds`` is the engine's time, if known."""
        o = decision.outcome
        key = (o.category, o.color, o.tier, o.approach, o.stage, o.excluded, o.exclusion)
        child = self.decision_children.get(key)
        if child is None:
            child = self.decisions.labels(
                category=self.category(o.category),
                color=_enum(o.color, model.COLORS),
                tier=_enum(o.tier, model.TIERS),
                approach=_enum(o.approach, model.APPROACHES),
                stage=_enum(o.stage, model.STAGES),
                excluded="true" if o.excluded else "false",
                exclusion=self.exclusion(o.exclusion) if o.exclusion and o.exclusion != "NONE" else NONE,
            )
            if len(self.decision_children) >= _CHILD_CACHE:
                self.decision_children.clear()
            self.decision_children[key] = child
        child.inc()
        for fkey in o.rules_fired:
            firing = self.firing_children.get(fkey)
            if firing is None:
                firing = self.rule_firings.labels(rule=self.rule(fkey[0]), layer=self.layer(fkey[1]))
                if len(self.firing_children) >= _CHILD_CACHE:
                    self.firing_children.clear()
                self.firing_children[fkey] = firing
            firing.inc()
        if seconds is not None:
            self.decision_seconds.observe(seconds)

    @contextmanager
    def decision_timer(self) -> Iterator[None]:
        """Time the block (the engine call) into ``fenliu_decision_seconds``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.decision_seconds.observe(time.perf_counter() - start)

    def observer(
        self,
        method: str,
        complaint: model.Complaint | None,
        decision: model.Decision | None,
        code: grpc.StatusCode | None,
    ) -> None:
        """The servicer's per-item observer: counts the decision, or the item's failure by status code.

        ``complaint`` is not looked at (it carries personal data and free text).
        """
        del complaint
        name = getattr(code, "name", None)
        if decision is not None and name in (None, "OK"):
            self.observe_decision(decision)
            return
        self.decision_errors.labels(
            grpc_method=self.grpc_method(_method_name(method)), grpc_code=name if name in _CODES else OTHER
        ).inc()

    def record_decision_log_error(self) -> None:
        self.decision_log_errors.inc()

    # ------------------------------------------------------------------------------------------------
    # The matter store

    def township_label(self, region: Mapping[str, str]) -> str:
        """The township a complaint's region names, as a metric label: the 9-digit township code (from
        the township's code, or the first 9 digits of the village's), never finer; NONE when neither
        says."""
        township = str(region.get("township_code", "") or "")
        banner = str(region.get("banner_code", "") or "")
        village = str(region.get("village_code", "") or "")
        if len(township) == 3 and len(banner) == 6:
            township = banner + township
        if len(township) != 9 and len(village) == 12:
            township = village[:9]
        return self.township(township) if len(township) == 9 else NONE

    def record_matter(
        self, region: Mapping[str, str], *, available: bool, multi_door: bool, seconds: float | None
    ) -> None:
        """Count one decision's matter step: without history, on a 多头访 matter, and the store's time."""
        if not available:
            self.matter_unavailable.labels(township=self.township_label(region)).inc()
        if multi_door:
            self.matter_multi_door.labels(township=self.township_label(region)).inc()
        if seconds is not None and available:
            self.matter_store_seconds.observe(seconds)

    def observe_event(self, kind: str, recorded: bool, state: MatterState) -> None:
        """Count one event a frontend recorded (not a repeat); a resolution by its level and township."""
        from fenliu.matter.events import EVENT_KINDS

        if not recorded:
            return
        self.matter_events.labels(kind=_enum(kind, EVENT_KINDS)).inc()
        if kind == "RESOLVED":
            self.matters_resolved.labels(
                level=_enum(state.resolved_level, model.TIERS), township=self._township_code(state.township)
            ).inc()

    def _township_code(self, township: str) -> str:
        return self.township(township) if len(township) == 9 else NONE

    def set_followup(self, counts: Iterable[OpenCount], overdue: Iterable[OverdueItem]) -> None:
        """The open and overdue gauges from one reading of the store; series no longer read go to 0."""
        opened: dict[tuple[str, ...], int] = {}
        for c in counts:
            k: tuple[str, ...] = (
                _enum(c.colour, model.COLORS),
                _enum(c.tier, model.TIERS),
                self.category_owner(c.owner_department),
                self._township_code(c.township),
            )
            opened[k] = opened.get(k, 0) + c.open
        late: dict[tuple[str, ...], int] = {}
        for item in overdue:
            st = item.state
            base = (
                _enum(st.colour, model.COLORS),
                _enum(st.tier, model.TIERS),
                self.category_owner(st.owner_department),
                self._township_code(st.township),
            )
            for name, _due, _past in item.overdue:
                late[(name, *base)] = late.get((name, *base), 0) + 1
        old_open, old_late = self.followup_keys
        for gauge, now, before in (
            (self.matters_open, opened, old_open),
            (self.matters_overdue, late, old_late),
        ):
            for key in before - now.keys():
                gauge.labels(*key).set(0)
            for key, n in now.items():
                gauge.labels(*key).set(n)
        self.followup_keys = (set(opened) | old_open, set(late) | old_late)

    def set_matter_store_degraded(self, degraded: bool) -> None:
        self.matter_store_degraded.set(1 if degraded else 0)

    # ------------------------------------------------------------------------------------------------
    # The rule pack and the workers

    def set_pack(self, pack: _PackLike | None) -> None:
        """This process now decides with ``pack`` (a PackId, or a loaded Pack, whose codes then bound the
        labels), or with no pack at all (``None``)."""
        with self.pack_lock:
            if pack is None:
                new = None
            else:
                new = (
                    self.pack_token(str(pack.name)),
                    self.pack_token(str(pack.revision)),
                    self.pack_token(str(pack.digest)),
                )
            if self.current_pack is not None and self.current_pack != new:
                self.pack_info.labels(*self.current_pack).set(0)
            if new is not None:
                self.pack_info.labels(*new).set(1)
            self.pack_loaded.set(0 if new is None else 1)
            self.current_pack = new
            vocab = _vocabulary(pack) if pack is not None else None
            if vocab is not None:
                categories, exclusions, rule_ids, layers = vocab
                self.category.allow(categories)
                self.exclusion.allow(exclusions or None)
                self.rule.allow(rule_ids)
                self.layer.allow(layers)
                self.decision_children.clear()
                self.firing_children.clear()

    def watch(self, triage: Triage) -> None:
        """Keep ``fenliu_pack_info``/``fenliu_pack_loaded`` and the label vocabulary in step with the
        pack of a :class:`fenliu.serving.runtime.Triage` (now and after every reload)."""

        def on_pack(info: PackInfo) -> None:
            decider = triage.decider
            pack = decider.pack if decider is not None else None
            if pack is not None and pack.digest == info.digest:
                self.set_pack(pack)
            else:
                self.set_pack(info)

        triage.add_listener(on_pack)

    def record_reload(self, ok: bool, pack: _PackLike | None = None) -> None:
        """Count a reload attempt, ``ok`` or refused; when ok, ``pack`` (if given) is what this process
        uses."""
        self.pack_reloads.labels(outcome="ok" if ok else "refused").inc()
        if ok and pack is not None:
            self.set_pack(pack)

    def record_worker_restart(self, *, planned: bool = False) -> None:
        """Count a worker replaced by the supervisor: crashed (default) or rolled on purpose
        (``planned``)."""
        self.worker_restarts.labels(reason="rolled" if planned else "crashed").inc()

    def server_interceptor(self) -> grpc.ServerInterceptor:
        """A ``grpc.ServerInterceptor`` recording the ``grpc_server_*`` metrics of every call."""
        return _Interceptor(self)


def _multiproc_dir() -> str | None:
    d = os.environ.get(MULTIPROC_ENV)
    return d if d and os.path.isdir(d) else None


# ----------------------------------------------------------------------------------------------------
# Processes


def prepare_multiprocess(directory: str | os.PathLike[str]) -> Metrics:
    """Switch this process to multiprocess mode, with ``directory`` (created, emptied) holding every
    process's values; returns the supervisor's :class:`Metrics`, whose series (reloads, restarts at 0)
    exist from the start.

    Call it in the supervisor before any worker is started: workers inherit ``PROMETHEUS_MULTIPROC_DIR``
    (forked or spawned alike), and a :class:`Metrics` made there records into the folder. The mode is
    the process's (an environment variable, and prometheus_client's value class), not an object's.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.db"):
        f.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client picks its value class when first imported; pick again now that the
    # variable is set (a fresh class also forgets files of an earlier folder).
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return Metrics()


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(
            f"metrics address must be HOST:PORT, e.g. 127.0.0.1:9464 or [::]:9464 (got {address!r})"
        )
    host = host.strip("[]") or "127.0.0.1"  # ":9464": this machine only
    return host, int(port)


def is_local(address: str) -> bool:
    """Whether a metrics address can be reached only from this machine (a loopback host)."""
    host, _ = _split_address(address)
    return host in ("localhost", "::1") or host.startswith("127.")


def _method_name(method: str) -> str:
    return method.rsplit("/", 1)[-1]


class _PackLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> str: ...
    @property
    def digest(self) -> str: ...


def _vocabulary(pack: _PackLike) -> tuple[set[str], set[str], set[str], set[str]] | None:
    """Codes a loaded :class:`fenliu.packs.load.Pack` can put in a decision; None for a bare PackId."""
    tables = getattr(pack, "tables", None)
    rules = getattr(pack, "rules", None)
    if not isinstance(tables, Mapping) or rules is None:
        return None
    cats = tables.get("categories")
    categories = {*(getattr(cats, "rows", {}) or {}), model.UNCLASSIFIED}
    exc = tables.get("exclusions")
    exclusions = set(getattr(exc, "rows", {}) or {})
    rule_ids = {str(getattr(r, "id", "")) for r in rules}
    layers = {str(x) for x in getattr(pack, "layers", ())} | {str(getattr(r, "layer", "")) for r in rules}
    return categories, exclusions, rule_ids, layers


class TimedTriage:
    """Wraps a :class:`fenliu.serving.runtime.Triage`; its ``decide`` is timed into
    ``fenliu_decision_seconds`` of ``metrics``.

    Everything else is the wrapped object's.
    """

    def __init__(self, triage: Triage, metrics: Metrics) -> None:
        self._triage = triage
        self._seconds = metrics.decision_seconds

    def decide(self, complaint: model.Complaint) -> model.Decision:
        start = time.perf_counter()
        try:
            decision = self._triage.decide(complaint)
        finally:
            self._seconds.observe(time.perf_counter() - start)
        return decision

    def info(self) -> PackInfo | None:
        return self._triage.info()

    def last_attempt(self) -> ReloadAttempt | None:
        return self._triage.last_attempt()

    def load(self, path: str) -> ReloadResult:
        return self._triage.load(path)

    def add_listener(self, fn: Callable[[PackInfo], None]) -> None:
        self._triage.add_listener(fn)

    @property
    def decider(self) -> Decider | None:
        return self._triage.decider

    def __getattr__(self, name: str) -> object:
        return getattr(self._triage, name)


# ----------------------------------------------------------------------------------------------------
# gRPC server interceptor (go-grpc-prometheus / py-grpc-prometheus metric names)

_CODES: Final = frozenset(c.name for c in grpc.StatusCode)
_UNKNOWN_RPC: Final = ("unknown", "unknown")


def _split_method(full: str) -> tuple[str, str]:
    # "/package.Service/Method"
    _, _, rest = full.partition("/")
    service, sep, method = rest.partition("/")
    if not sep:
        return _UNKNOWN_RPC
    return service, method


def _code_of(context: grpc.ServicerContext, exc: BaseException | None) -> str:
    code: grpc.StatusCode | None = None
    try:
        code = context.code()
    except Exception:  # an interceptor must never break a call
        code = None
    name = getattr(code, "name", None)
    if isinstance(name, str) and name in _CODES:
        return name
    if exc is None:
        return "OK"
    try:
        active = bool(context.is_active())
    except Exception:
        active = True
    return "UNKNOWN" if active else "CANCELLED"


@dataclass(slots=True)
class _Call:
    m: Metrics
    labels: tuple[str, str, str]
    start: float
    done: bool = False
    lock: threading.Lock | None = None
    # Whether the RPC's termination callback is registered: a normal end is then recorded there.
    deferred: bool = False
    pending: str | None = None  # the code of a normal end, recorded at termination
    pending_reply: bool = False  # ... and whether it sent a unary reply

    def received(self) -> None:
        self.m.grpc_received.labels(*self.labels).inc()

    def sent(self) -> None:
        self.m.grpc_sent.labels(*self.labels).inc()

    def finish(self, code: str) -> None:
        lock = self.lock
        if lock is not None:
            with lock:
                if self.done:
                    return
                self.done = True
        elif self.done:
            return
        else:
            self.done = True
        self.m.grpc_handled.labels(*self.labels, code).inc()
        self.m.grpc_seconds.labels(*self.labels).observe(time.perf_counter() - self.start)


def _counted(requests: Iterator[_T], call: _Call) -> Iterator[_T]:
    for r in requests:
        call.received()
        yield r


def _stream_out(responses: Iterable[_T], context: grpc.ServicerContext, call: _Call) -> Iterator[_T]:
    try:
        for r in responses:
            call.sent()
            yield r
    except GeneratorExit:
        call.finish("CANCELLED")
        raise
    except BaseException as e:
        call.finish(_code_of(context, e))
        raise
    _finish_normally(call, _code_of(context, None))


def _finish_normally(call: _Call, code: str, reply: bool = False) -> None:
    """Record a handler that returned: at once, or (callback registered) when the RPC terminates.

    A client's cancel reaches a streaming handler as the end of its requests when gRPC happens to
    process the empty read before the cancellation (measured: about 1 cancelled stream in 75), so
    the handler returns as if the client had half-closed. Only at termination is it known which it
    was, so streams record their normal end there; a unary reply (``reply``) is counted as sent
    only then too.
    """
    if not call.deferred or code != "OK":
        if reply and code == "OK":
            call.sent()
        call.finish(code)
    else:
        call.pending_reply = reply
        call.pending = code


def _client_cancelled(context: grpc.ServicerContext) -> bool:
    # grpc's server keeps whether the client cancelled in the RPC state ("cancelled"), and offers no
    # public way to ask once the RPC is over (is_active() is then False either way).
    state = getattr(context, "_state", None)
    return getattr(state, "client", None) == "cancelled"


def _on_termination(context: grpc.ServicerContext, call: _Call) -> None:
    """Streams are finished when the RPC terminates: as the handler ended, or CANCELLED."""

    def done() -> None:
        pending = call.pending
        if pending is None or _client_cancelled(context):
            call.finish("CANCELLED")
        else:
            if call.pending_reply:
                call.sent()
            call.finish(pending)

    with suppress(Exception):
        call.deferred = bool(context.add_callback(done))


class _Interceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        m = self._metrics
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED
            labels = ("unary", *_UNKNOWN_RPC)
            m.grpc_started.labels(*labels).inc()
            m.grpc_handled.labels(*labels, "UNIMPLEMENTED").inc()
            return None
        service, method = _split_method(str(handler_call_details.method))
        req_stream, resp_stream = bool(handler.request_streaming), bool(handler.response_streaming)
        grpc_type = {
            (False, False): "unary",
            (True, False): "client_stream",
            (False, True): "server_stream",
            (True, True): "bidi_stream",
        }[(req_stream, resp_stream)]
        labels = (grpc_type, m.grpc_service(service), m.grpc_method(method))
        if OTHER in labels[1:]:
            labels = (grpc_type, *_UNKNOWN_RPC)

        def begin() -> _Call:
            m.grpc_started.labels(*labels).inc()
            return _Call(m, labels, time.perf_counter())

        def unary_reply(call: _Call, context: grpc.ServicerContext, fn: Callable[[], _T]) -> _T:
            try:
                response = fn()
            except BaseException as e:
                call.finish(_code_of(context, e))
                raise
            _finish_normally(call, _code_of(context, None), reply=True)
            return response

        def deferred(call: _Call, context: grpc.ServicerContext) -> _Call:
            call.lock = threading.Lock()
            _on_termination(context, call)
            return call

        def stream_reply(
            call: _Call, context: grpc.ServicerContext, fn: Callable[[], Iterable[_T]]
        ) -> Iterator[_T]:
            deferred(call, context)
            try:
                responses = fn()
            except BaseException as e:
                call.finish(_code_of(context, e))
                raise
            return _stream_out(responses, context, call)

        if not req_stream and not resp_stream:
            inner_uu = handler.unary_unary

            def unary_unary(request: object, context: grpc.ServicerContext) -> object:
                call = begin()
                call.received()
                return unary_reply(call, context, lambda: inner_uu(request, context))

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if req_stream and not resp_stream:
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[object], context: grpc.ServicerContext) -> object:
                call = deferred(begin(), context)
                return unary_reply(call, context, lambda: inner_su(_counted(requests, call), context))

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        if not req_stream:
            inner_us = handler.unary_stream

            def unary_stream(request: object, context: grpc.ServicerContext) -> Iterator[object]:
                call = begin()
                call.received()
                return stream_reply(call, context, lambda: inner_us(request, context))

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        inner_ss = handler.stream_stream

        def stream_stream(requests: Iterator[object], context: grpc.ServicerContext) -> Iterator[object]:
            call = begin()
            return stream_reply(call, context, lambda: inner_ss(_counted(requests, call), context))

        return grpc.stream_stream_rpc_method_handler(
            stream_stream, handler.request_deserializer, handler.response_serializer
        )
