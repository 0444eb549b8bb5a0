"""Serving with processes: ``fenliu serve --workers N``.

The engine is not thread-safe, so fenliu scales with processes: N workers, each with its own engine and
its own gRPC server, listen on one port with ``SO_REUSEPORT`` and the kernel spreads connections over
them. Workers are started with the ``spawn`` method (gRPC must not be forked).

The supervisor

* holds the port (a bound, non-listening ``SO_REUSEPORT`` socket) so that ``:0`` picks one port for all;
* replaces a worker that dies (logged as ``worker_exited`` then ``worker_started``), backing off when a
  worker dies young again and again; the replacement starts from a sealed copy of the pack that is
  serving (:mod:`fenliu.packs.sealed`), never from what is on disk now;
* on SIGTERM or SIGINT tells every worker to stop: each one reports NOT_SERVING, keeps serving for
  ``--drain`` seconds (0 by default) so that health-checking clients move away, stops taking calls (the
  listening socket closed), lets calls in flight finish within ``--grace`` seconds, then exits 0; the
  supervisor then exits 0;
* on SIGHUP forwards SIGHUP to the workers, each of which reloads the pack (:func:`on_reload_signal`).

``--workers 1`` serves in the calling process, with the same signals, and no supervisor.
``--pin-cpus`` pins worker *i* to the *i*-th CPU of a list (:func:`parse_cpus`), before it starts a thread.
Every log line is JSON (:mod:`fenliu.serving.logs`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Final

from fenliu import i18n
from fenliu.i18n import _
from fenliu.serving.config import ServeConfig
from fenliu.serving.logs import setup_logging

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from wsgiref.simple_server import WSGIServer

    import grpc

    from fenliu.serving.metrics import Metrics
    from fenliu.serving.reload import PackWatcher
    from fenliu.serving.runtime import ReloadResult, Triage
    from fenliu.serving.server import Observer, TriageEngine

log = logging.getLogger("fenliu.supervisor")

READY_TIMEOUT: Final = 120.0  # seconds for a worker to load its pack and listen
YOUNG: Final = 10.0  # a worker that dies younger than this counts as a crash loop
MAX_BACKOFF: Final = 30.0


# ----------------------------------------------------------------------------------------------------
# Pinning workers to CPUs (--pin-cpus)


def _ranges(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    spans: list[list[int]] = []
    for c in sorted(cpus):
        if spans and spans[-1][1] == c - 1:
            spans[-1][1] = c
        else:
            spans.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def parse_cpus(spec: str) -> list[int]:
    """The CPUs of ``--pin-cpus``: ``auto`` (every CPU this process may run on) or a list like ``0,2-3``.

    Raises ``ValueError`` with a message for the operator: not a list, or a CPU this process may not use.
    """
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError(_("--pin-cpus needs an operating system with sched_setaffinity (Linux)"))
    allowed = sorted(os.sched_getaffinity(0))
    text = spec.strip()
    if text == "auto":
        return allowed
    cpus: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            raise ValueError(
                _("--pin-cpus: {part} is not a CPU number or range (e.g. auto, 0,1 or 0-3)").format(
                    part=repr(part.strip())
                )
            )
        for c in range(int(lo), int(hi if dash else lo) + 1):
            if c not in allowed:
                raise ValueError(
                    _("--pin-cpus: CPU {cpu} is not one this process may run on ({allowed})").format(
                        cpu=c, allowed=_ranges(allowed)
                    )
                )
            if c not in cpus:
                cpus.append(c)
    return cpus


def pin_to_cpu(index: int, cpus: Sequence[int] | None) -> None:
    """Pin this process (its calling thread, and every thread it starts later) to worker ``index``'s CPU."""
    if not cpus:
        return
    cpu = cpus[index % len(cpus)]
    os.sched_setaffinity(0, {cpu})
    log.info("worker_pinned", extra={"worker": index, "cpu": cpu})


# ----------------------------------------------------------------------------------------------------
# Ports


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(
            _("fenliu serve: --address must be HOST:PORT, not {address}").format(address=repr(address))
        )
    return host.strip("[]") or "0.0.0.0", int(port)


class AddressClaim:
    """A claim on a port while a server starts, so that two servers never share one address.

    Workers of one server share their port with ``SO_REUSEPORT``, which the kernel grants to any
    process of the same user: a second ``fenliu serve`` on a held address used to start, and calls
    were answered by two packs at random. So before it binds, a server checks that nothing holds the
    address: a socket without ``SO_REUSEPORT`` (with ``SO_REUSEADDR``, so that connections in
    TIME_WAIT do not count) cannot bind where a socket is listening, or where the supervisor's holder
    (``SO_REUSEPORT`` only) is bound. The check and the bind that follows it run under an ``flock`` on
    ``$TMPDIR/fenliu-<uid>/port-<port>.lock``, so that two servers starting at once are taken in turn;
    the lock is released once the server holds its port (:meth:`release`). Port 0 needs no claim.
    """

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self._fd = -1
        host, port = _split_address(address)
        if port == 0:
            return
        folder = os.path.join(tempfile.gettempdir(), f"fenliu-{os.getuid()}")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self._fd = os.open(
            os.path.join(folder, f"port-{port}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.release()
                    raise SystemExit(
                        _(
                            "fenliu serve: cannot listen on {address}: another server is starting on it"
                        ).format(address=address)
                    ) from None
                time.sleep(0.05)
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as e:
            self.release()
            why = (
                _("another server holds it (address already in use)")
                if e.errno == errno.EADDRINUSE
                else e.strerror
            )
            raise SystemExit(
                _("fenliu serve: cannot listen on {address}: {reason}").format(address=address, reason=why)
            ) from None
        finally:
            probe.close()

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # and with it the lock
            self._fd = -1


def reserve_port(address: str) -> tuple[socket.socket, int]:
    """Bind (without listening) a SO_REUSEPORT socket on ``address``: the port every worker will use."""
    host, port = _split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SystemExit(
            _("fenliu serve: cannot listen on {address}: {reason}").format(address=address, reason=e.strerror)
        ) from None
    return sock, int(sock.getsockname()[1])


def _with_port(address: str, port: int) -> str:
    host, _ = address.rsplit(":", 1)
    return f"{host}:{port}"


# ----------------------------------------------------------------------------------------------------
# Extension points


@dataclass
class Extensions:
    """What a worker serves with: the engine (maybe wrapped) and the servicer's observers and interceptors."""

    triage: TriageEngine
    observers: list[Observer] = field(default_factory=list)
    interceptors: list[grpc.ServerInterceptor] = field(default_factory=list)
    metrics: Metrics | None = None


@dataclass
class MetricsEndpoint:
    """The supervisor's (or single process's) ``/metrics`` server and multiprocess folder, if any."""

    server: WSGIServer | None = None
    folder: str | None = None
    metrics: Metrics | None = None
    url: str = ""  # where /metrics is served ("" when it is not)


def build_extensions(config: ServeConfig, triage: Triage, metrics: Metrics | None = None) -> Extensions:
    """Called in each serving process once its pack is loaded: metrics and the decision log.

    With ``--metrics-address``: decision, rule-firing, pack and gRPC metrics (``fenliu.serving.metrics``); the
    engine is timed. With ``--decision-log PATH``: every decision as a JSON line, personal data
    keyed-hashed (``fenliu.serving.decision_log``; the key from ``--decision-log-key-file`` or
    ``$FENLIU_DECISION_LOG_KEY``). The metrics are recorded into ``metrics`` (the single process's,
    which its endpoint serves), or into a new :class:`~fenliu.serving.metrics.Metrics` (a worker's).
    """
    ext = Extensions(triage)
    if config.metrics_address:
        from fenliu.serving.metrics import Metrics, TimedTriage

        m = ext.metrics = metrics if metrics is not None else Metrics()
        m.watch(triage)
        ext.triage = TimedTriage(triage, m)
        ext.observers.append(m.observer)
        ext.interceptors.append(m.server_interceptor())
    if config.decision_log:
        from fenliu.serving.decision_log import DecisionLog, load_hash_key

        ext.observers.append(
            DecisionLog(
                config.decision_log,
                max_bytes=int(config.decision_log_max_bytes),
                backups=int(config.decision_log_backups),
                hash_key=load_hash_key(config.decision_log_key_file),
                redact_text=not config.decision_log_keep_text,
                metrics=ext.metrics,
            )
        )
    return ext


def on_supervisor_start(config: ServeConfig, *, workers: int) -> MetricsEndpoint:
    """Called in the supervisor (or the single serving process) before serving: the metrics endpoint.

    With several workers, metrics go through prometheus_client's multiprocess mode: a fresh folder that
    workers inherit through ``PROMETHEUS_MULTIPROC_DIR``, summed by the supervisor's endpoint.
    """
    endpoint = MetricsEndpoint()
    if not config.metrics_address:
        return endpoint
    from fenliu.serving import metrics

    if workers > 1:
        endpoint.folder = tempfile.mkdtemp(prefix="fenliu-metrics-")
        endpoint.metrics = metrics.prepare_multiprocess(endpoint.folder)
    else:
        endpoint.metrics = metrics.Metrics()
    tls = config.metrics_tls
    endpoint.server, port = endpoint.metrics.start_http(
        config.metrics_address,
        certfile=config.tls_cert if tls else None,
        keyfile=config.tls_key if tls else None,
        client_cafile=config.tls_client_ca if tls else None,
    )
    log.info("metrics_serving", extra={"address": config.metrics_address, "port": port, "tls": bool(tls)})
    host = config.metrics_address.rsplit(":", 1)[0] or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host
    endpoint.url = f"{'https' if tls else 'http'}://{host}:{port}/metrics"
    if config.tls_cert and not tls and not metrics.is_local(config.metrics_address):
        log.warning(
            "metrics_plaintext",
            extra={
                "address": config.metrics_address,
                "advice": "gRPC requires TLS but /metrics is plain HTTP reachable from other machines: "
                "add --metrics-tls, or bind --metrics-address to 127.0.0.1",
            },
        )
    return endpoint


def on_supervisor_stop(endpoint: MetricsEndpoint) -> None:
    if endpoint.server is not None:
        endpoint.server.shutdown()
        endpoint.server.server_close()
        endpoint.server = None
    if endpoint.folder is not None:
        import shutil

        shutil.rmtree(endpoint.folder, ignore_errors=True)
        endpoint.folder = None


def on_worker_exit(pid: int, *, crashed: bool, metrics: Metrics | None) -> None:
    """Called in the supervisor when a worker has exited; ``crashed`` when it died unasked."""
    if metrics is None:
        return
    metrics.mark_worker_dead(pid)
    if crashed:
        metrics.record_worker_restart()


def on_reload_signal(
    triage: Triage, rules: str | None, *, triggers: int = 1, metrics: Metrics | None = None
) -> ReloadResult | None:
    """HOOK (SIGHUP): reload the pack from ``rules``; the old pack keeps serving if it fails.

    ``triggers``: how many reload requests (signals, changes) this one reload serves.
    """
    if not rules:
        log.warning("reload_skipped", extra={"reason": "no --rules given"})
        return None
    started = time.monotonic()
    try:
        result = triage.load(rules)
    except Exception:
        log.error("reload_failed", exc_info=True, extra={"rules": rules})
        return None
    ms = round((time.monotonic() - started) * 1000, 1)
    if metrics is not None:
        metrics.record_reload(bool(getattr(result, "ok", False)), getattr(result, "pack", None))
    if getattr(result, "ok", False):
        pack = result.pack
        log.info(
            "pack_reloaded",
            extra={
                "rules": rules,
                "pack": getattr(pack, "name", None),
                "revision": getattr(pack, "revision", None),
                "unchanged": bool(getattr(result, "unchanged", False)),
                "ms": ms,
                "triggers": triggers,
            },
        )
    else:
        problems = [str(p) for p in getattr(result, "problems", [])]
        failures = [str(f) for f in getattr(result, "failures", [])]
        log.error(
            "pack_reload_failed",
            extra={
                "rules": rules,
                "problems": problems[:50],
                "failures": failures[:50],
                "ms": ms,
                "triggers": triggers,
            },
        )
    return result


# ----------------------------------------------------------------------------------------------------
# One worker


def _load_triage(rules: str | None, sealed: dict[str, str] | None = None) -> Triage:
    """The pack to serve: the supervisor's sealed copy of the serving pack if given, else ``rules``.

    A sealed copy already passed every gate as the pack it copies, byte for byte: it is loaded without
    the lint and the pack's cases (which keeps a restart short), and used only if its digest is the
    sealed one; otherwise the worker loads ``rules`` as at start.
    """
    from fenliu.serving.runtime import Triage

    if sealed and rules:
        try:
            triage = Triage.from_path(sealed["path"], run_tests=False, run_lint=False)
        except Exception as e:
            log.error(
                "sealed_pack_unusable", extra={"digest": sealed["digest"], "exc_type": type(e).__name__}
            )
        else:
            info = triage.info()
            if info is not None and info.digest == sealed["digest"]:
                log.info("pack_from_seal", extra={"digest": info.digest, "revision": info.revision})
                return triage
            log.error(
                "sealed_pack_unusable",
                extra={"digest": sealed["digest"], "found": info.digest if info else None},
            )
    return Triage.from_path(rules) if rules else Triage.empty()


def _pack_label(triage: TriageEngine) -> str:
    info = triage.info()
    return f"{info.name}@{info.revision}" if info is not None else "no rule pack (NOT_SERVING)"


@dataclass
class _StopFlag:
    event: threading.Event = field(default_factory=threading.Event)
    signal: str = ""


def _install_worker_signals(stop: _StopFlag, on_hup: Callable[[], None]) -> None:
    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.signal = signal.Signals(signum).name
        stop.event.set()

    def _hup(_signum: int, _frame: FrameType | None) -> None:
        on_hup()

    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)


#: The collector's thresholds in a serving process (Python's defaults: 700, 10, 10).
GC_THRESHOLDS: Final = (20_000, 50, 50)


def tune_gc() -> None:
    """Collect less often in a worker.

    A worker keeps a large, growing memory of decisions (the memo graph, the conversion templates), and
    every call allocates many short-lived objects, so with Python's defaults the collector runs every
    few calls and keeps walking the same long-lived objects: measured at about a fifth of a decision's
    CPU. What was loaded before serving (modules, the pack, the compiled engine) is frozen out of
    collection; young objects are collected every 20,000 allocations instead of 700. Little that a
    call allocates forms reference cycles, so memory does not grow by waiting (the memory benchmark
    holds the worker flat).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve_in_process(
    config: ServeConfig,
    address: str,
    *,
    reuse_port: bool,
    on_ready: Callable[[int, str], None],
    watch_parent: bool = False,
    watch_rules: bool = False,
    on_pack: Callable[[Triage], None] | None = None,
    metrics: Metrics | None = None,
    say_refusal: bool = True,
) -> int:
    """Load the pack, serve until SIGTERM/SIGINT, stop gracefully. Returns the exit code.

    ``on_pack(triage)`` is called once a pack is live: after loading, and after each reload that
    changed it. ``metrics``: where to record (the single process's, which its endpoint serves); a new one
    with ``--metrics-address`` when not given.
    """
    from fenliu.domain.errors import PackError
    from fenliu.serving import server as srv

    ppid = os.getppid()
    try:
        triage = _load_triage(config.rules, config.sealed_pack)
    except PackError as e:
        log.error("pack_error", extra={"rules": config.rules, "problems": [str(p) for p in e.problems][:50]})
        if say_refusal:  # the operator reads why, in their language, beside the log line
            print(
                _("fenliu serve: the rule pack {rules} cannot be served ({n} error(s)):").format(
                    rules=config.rules, n=len(e.problems)
                ),
                file=sys.stderr,
            )
            for p in e.problems[:50]:
                print(f"  {p}", file=sys.stderr)
        return 2
    except OSError as e:
        log.error("pack_unreadable", extra={"rules": config.rules, "error": e.strerror or type(e).__name__})
        if say_refusal:
            print(
                _("fenliu serve: cannot read the rule pack {rules}: {reason}").format(
                    rules=config.rules, reason=e.strerror or type(e).__name__
                ),
                file=sys.stderr,
            )
        return 2
    ext = build_extensions(config, triage, metrics)
    matters = None
    if config.store:  # the matter store and its numerical libraries only when it is used
        from fenliu.matter import StoreError
        from fenliu.serving.matters import open_matters

        try:
            matters = open_matters(config, metrics=ext.metrics)
        except (StoreError, ValueError, OSError) as e:
            log.error("matter_store_unusable", extra={"error": str(e)})
            return 2
        if matters is not None and ext.metrics is not None:
            matters.start_followup()  # the open and overdue gauges, read from the store
    try:
        serving = srv.build_server(
            address,
            ext.triage,
            tls=config.tls(),
            max_message_bytes=config.max_message_bytes,
            observers=ext.observers,
            interceptors=ext.interceptors,
            reuse_port=reuse_port,
            threads=config.threads,
            max_streams=config.max_streams,
            stream_idle_seconds=config.stream_idle_timeout,
            matters=matters,
        )
    except OSError as e:
        log.error("listen_failed", extra={"address": address, "error": str(e)})
        if matters is not None:
            matters.close()
        return 3

    from fenliu.serving.reload import Coalescer

    stop = _StopFlag()

    def reload_now(triggers: int) -> None:
        result = on_reload_signal(triage, config.rules, triggers=triggers, metrics=ext.metrics)
        if on_pack is not None and getattr(result, "ok", False) and not getattr(result, "unchanged", False):
            on_pack(triage)

    # However many SIGHUPs and changes arrive, one reload runs at a time and at most one waits.
    reloads = Coalescer(reload_now)
    reload = reloads.request
    if on_pack is not None and triage.info() is not None:
        on_pack(triage)

    _install_worker_signals(stop, reload)
    watcher = _start_watcher(config, reload) if watch_rules else None
    tune_gc()
    serving.server.start()
    label = _pack_label(triage)
    log.info("worker_serving", extra={"address": _with_port(address, serving.port), "pack": label})
    on_ready(serving.port, label)

    while not stop.event.wait(0.5):
        if watch_parent and os.getppid() != ppid:
            stop.signal = "parent_exited"
            break
    grace = float(config.grace)
    drain = max(0.0, float(config.drain))
    c = serving.servicer.counters
    log.info(
        "worker_stopping",
        extra={
            "signal": stop.signal,
            "drain_s": drain,
            "grace_s": grace,
            "in_flight": c.started - c.finished,
        },
    )
    if watcher is not None:
        watcher.stop()
    reloads.close(0.0)
    serving.health.enter_graceful_shutdown()  # NOT_SERVING from now on
    if drain:  # still taking calls while clients that watch health move away
        time.sleep(drain)
    serving.server.stop(grace).wait()
    if matters is not None:  # what the store could not take stays queued for the next start
        matters.close()
    # Stopped: a second SIGTERM (to the whole process group, then from the supervisor) must not kill the
    # process while it exits.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.info("worker_stopped", extra={"calls_started": c.started, "calls_finished": c.finished})
    return 0


def _start_watcher(config: ServeConfig, on_change: Callable[[], None]) -> PackWatcher | None:
    """Reload on changes to the rules folder (and the base packs it extends), unless --no-watch."""
    if not config.rules or not config.watch:
        return None
    from fenliu.serving.reload import PackWatcher

    return PackWatcher(config.rules, on_change).start()


def _worker_entry(config: ServeConfig, index: int, address: str, conn: Connection) -> None:
    """Target of a spawned worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us in order
    setup_logging(config.log_level)
    i18n.choose()  # the supervisor's language, which the command line put in LANGUAGE

    sending = threading.Lock()  # the main thread and the reload thread both send

    def ready(port: int, label: str) -> None:
        with sending:
            conn.send({"ready": True, "pid": os.getpid(), "port": port, "pack": label})

    def live(triage: Triage) -> None:  # the supervisor seals what this worker serves
        from fenliu.packs.sealed import sources_of

        decider = triage.decider
        if decider is not None:
            with sending, contextlib.suppress(OSError, ValueError):
                conn.send({"pack": sources_of(decider.pack)})

    code = 1
    try:
        pin_to_cpu(index, config.pinned_cpus)  # first: the threads started later inherit it
        code = serve_in_process(
            config,
            address,
            reuse_port=True,
            on_ready=ready,
            watch_parent=True,
            on_pack=live,
            # at the first start, one worker says in words why the pack cannot be served, not each
            # (a worker replacing one that died only logs: the operator is not watching a terminal)
            say_refusal=index == 0 and config.sealed_pack is None,
        )
    except Exception:
        log.error("worker_crashed", exc_info=True, extra={"worker": index})
        code = 1
    finally:
        with contextlib.suppress(OSError):
            conn.close()
    logging.shutdown()
    sys.exit(code)


# ----------------------------------------------------------------------------------------------------
# The supervisor


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection | None
    started: float
    ready: bool = False
    pid: int = 0


class Supervisor:
    def __init__(self, config: ServeConfig, address: str, workers: int) -> None:
        self.config = config
        self.address = address
        self.count = workers
        self.drain = max(0.0, float(config.drain))
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: dict[int, _Worker] = {}
        self.crashes: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.stopping = ""
        self.hup = False
        self.label = ""
        self.metrics: Metrics | None = None  # the supervisor's own (restarts, dead workers' gauges)
        from fenliu.packs.sealed import Seal

        self.seal = Seal()  # the pack that is serving, for the workers that replace dead ones

    def spawn(self, index: int) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=False)
        config = self.config
        if self.seal.current is not None:
            config = config.replace(sealed_pack=self.seal.current.as_option())
        p = self.ctx.Process(
            target=_worker_entry,
            args=(config, index, self.address, child),
            name=f"fenliu-worker-{index}",
        )
        p.start()
        child.close()
        w = _Worker(index, p, parent, time.monotonic(), pid=p.pid or 0)
        self.workers[index] = w
        log.info("worker_started", extra={"worker": index, "worker_pid": w.pid})
        return w

    def _read_ready(self, w: _Worker) -> None:
        conn = w.conn
        assert conn is not None, "read only when its connection is ready"
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            with contextlib.suppress(OSError):
                conn.close()
            w.conn = None
            return
        if isinstance(msg, dict) and isinstance(msg.get("pack"), dict):
            try:
                self.seal.store(msg["pack"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("pack_seal_failed", extra={"worker": w.index, "exc_type": type(e).__name__})
            return
        if isinstance(msg, dict) and msg.get("ready"):
            w.ready = True
            self.label = str(msg.get("pack", ""))
            log.info("worker_ready", extra={"worker": w.index, "worker_pid": w.pid, "pack": self.label})

    def start_all(self) -> bool:
        """Start every worker and wait until all listen; False if one fails to start.

        When one fails, the others still starting are waited for (to the same deadline) before this
        returns: they read the same pack, and the one that says why in words must not be stopped first.
        """
        for i in range(self.count):
            self.spawn(i)
        deadline = time.monotonic() + READY_TIMEOUT
        failed: set[int] = set()
        while True:
            if self.stopping:
                return False
            pending = [w for w in self.workers.values() if not w.ready and w.index not in failed]
            for w in pending:
                if not w.process.is_alive() and not (w.conn is not None and w.conn.poll()):
                    log.error(
                        "worker_failed_to_start",
                        extra={"worker": w.index, "worker_pid": w.pid, "exitcode": w.process.exitcode},
                    )
                    failed.add(w.index)
            pending = [w for w in pending if w.index not in failed]
            if not pending:
                return not failed
            if time.monotonic() > deadline:
                log.error("workers_not_ready", extra={"timeout_s": READY_TIMEOUT})
                return False
            conns = [w.conn for w in pending if w.conn is not None]
            for c in multiprocessing.connection.wait(
                [*conns, *(w.process.sentinel for w in pending)], timeout=0.5
            ):
                for w in pending:
                    if c is w.conn:
                        self._read_ready(w)

    def _reap(self) -> None:
        now = time.monotonic()
        for index, w in list(self.workers.items()):
            if w.process.is_alive():
                continue
            w.process.join(0)
            code = w.process.exitcode
            lived = now - w.started
            how = signal.Signals(-code).name if code is not None and code < 0 else f"exit {code}"
            del self.workers[index]
            if w.conn is not None:
                with contextlib.suppress(OSError):
                    w.conn.close()
            on_worker_exit(w.pid, crashed=not self.stopping, metrics=self.metrics)
            if self.stopping:
                continue
            self.crashes[index] = self.crashes.get(index, 0) + 1 if lived < YOUNG else 0
            # A worker that served and is killed once is replaced at once; one that never got ready, or
            # dies young again and again, is restarted with a backoff.
            loop = self.crashes[index] - (1 if w.ready else 0)
            delay = 0.0 if loop <= 0 else min(MAX_BACKOFF, 0.5 * 2 ** (loop - 1))
            log.error(
                "worker_exited",
                extra={
                    "worker": index,
                    "worker_pid": w.pid,
                    "exitcode": code,
                    "how": how,
                    "lived_s": round(lived, 1),
                    "restart_in_s": delay,
                },
            )
            self.restart_at[index] = now + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, at in list(self.restart_at.items()):
            if at <= now and not self.stopping:
                del self.restart_at[index]
                self.spawn(index)

    def signal_workers(self, signum: int) -> None:
        for w in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signum)

    def run(self, wakeup_fd: int) -> None:
        """Watch the workers until a stop signal."""
        while not self.stopping:
            waitables: list[Connection | int] = [wakeup_fd]
            for w in self.workers.values():
                waitables.append(w.process.sentinel)
                if w.conn is not None:
                    waitables.append(w.conn)
            timeout = 1.0
            if self.restart_at:
                timeout = max(0.0, min(timeout, min(self.restart_at.values()) - time.monotonic()))
            ready = multiprocessing.connection.wait(waitables, timeout=timeout)
            if wakeup_fd in ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(wakeup_fd, 512)
            for w in list(self.workers.values()):
                if w.conn is not None and w.conn in ready:
                    self._read_ready(w)
            if self.hup:
                self.hup = False
                log.info("reload_requested", extra={"workers": [w.pid for w in self.workers.values()]})
                self.signal_workers(signal.SIGHUP)
            self._reap()
            self._restart_due()

    def shutdown(self, grace: float) -> None:
        log.info(
            "shutdown_started",
            extra={"signal": self.stopping, "workers": [w.pid for w in self.workers.values()]},
        )
        self.signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + self.drain + grace + 10.0
        for w in list(self.workers.values()):
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                log.error(
                    "worker_killed",
                    extra={"worker": w.index, "worker_pid": w.pid, "reason": "grace exceeded"},
                )
                w.process.kill()
                w.process.join(5)
            else:
                log.info(
                    "worker_exited",
                    extra={"worker": w.index, "worker_pid": w.pid, "exitcode": w.process.exitcode},
                )
            on_worker_exit(w.pid, crashed=False, metrics=self.metrics)
        log.info("shutdown_complete")


def _store_refused(config: ServeConfig) -> bool:
    """Open (and migrate) the matter store once, before any worker serves; print why it cannot be used.
    Called after this process is pinned: the store brings numerical libraries that start threads."""
    if not config.store:
        return False
    from fenliu.serving.matters import check_store

    why = check_store(config)
    if why is None:
        return False
    log.error("matter_store_unusable", extra={"error": why})
    print(_("fenliu serve: {reason}").format(reason=why), file=sys.stderr)
    return True


def serve(config: ServeConfig) -> int:
    """``fenliu serve``; returns the exit code (0 after a graceful stop)."""
    setup_logging(config.log_level)
    from fenliu.serving import server as srv

    try:
        tls = config.tls()
    except ValueError as e:
        raise SystemExit(_("fenliu serve: {reason}").format(reason=e)) from None
    workers = int(config.workers)
    if tls is not None:  # gRPC would say only "Failed to bind to address"
        try:
            tls.check()
        except ValueError as e:
            log.error("tls_unusable", extra={"error": str(e)})
            print(_("fenliu serve: {reason}").format(reason=e), file=sys.stderr)
            return 2
    if config.decision_log:  # refuse to start without a key or a file, before any worker
        from fenliu.serving.decision_log import check_writable, load_hash_key

        try:
            load_hash_key(config.decision_log_key_file)
            check_writable(config.decision_log)
        except (ValueError, OSError) as e:
            log.error("decision_log_unusable", extra={"error": str(e)})
            print(_("fenliu serve: {reason}").format(reason=e), file=sys.stderr)
            return 2
    if workers < 1:
        raise SystemExit(_("fenliu serve: --workers must be at least 1"))
    if int(config.max_streams) < 1 or float(config.stream_idle_timeout) < 0:
        raise SystemExit(
            _("fenliu serve: --max-streams must be at least 1 and --stream-idle-timeout not negative")
        )
    config = config.replace(pinned_cpus=None)
    if config.pin_cpus is not None:
        try:
            config = config.replace(pinned_cpus=tuple(parse_cpus(config.pin_cpus)))
        except ValueError as e:
            log.error("pin_cpus_invalid", extra={"error": str(e)})
            print(_("fenliu serve: {reason}").format(reason=e), file=sys.stderr)
            return 2

    def announce(port: int, label: str, pids: list[int]) -> None:
        print(
            srv.banner(config.address, port, workers, pids, label, tls, metrics_url=endpoint.url), flush=True
        )

    claim = AddressClaim(config.address)
    if workers == 1:
        pin_to_cpu(0, config.pinned_cpus)
        if _store_refused(config):
            claim.release()
            return 2
        endpoint = on_supervisor_start(config, workers=1)

        def ready(port: int, label: str) -> None:
            claim.release()
            announce(port, label, [os.getpid()])

        try:
            return serve_in_process(
                config,
                config.address,
                reuse_port=False,
                on_ready=ready,
                watch_rules=True,
                metrics=endpoint.metrics,
            )
        finally:
            claim.release()
            on_supervisor_stop(endpoint)

    if _store_refused(config):
        claim.release()
        return 2
    try:
        holder, port = reserve_port(config.address)
    finally:
        claim.release()
    address = _with_port(config.address, port)
    sup = Supervisor(config, address, workers)
    endpoint = MetricsEndpoint()
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    old_wakeup = signal.set_wakeup_fd(wfd)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        sup.stopping = sup.stopping or signal.Signals(signum).name

    def _hup(_signum: int, _frame: FrameType | None) -> None:
        sup.hup = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _hup)
    try:
        log.info("supervisor_started", extra={"address": address, "workers": workers})
        endpoint = on_supervisor_start(config, workers=workers)
        sup.metrics = endpoint.metrics
        if not sup.start_all():
            sup.stopping = sup.stopping or "startup_failed"
            sup.shutdown(0.0)
            return 0 if sup.stopping in ("SIGTERM", "SIGINT") else 1
        announce(port, sup.label, [w.pid for w in sup.workers.values()])

        def _changed() -> None:  # from the watcher's thread: wake the loop, which signals the workers
            sup.hup = True
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(wfd, b"w")

        watcher = _start_watcher(config, _changed)
        try:
            sup.run(rfd)
        finally:
            if watcher is not None:
                watcher.stop()
        sup.shutdown(float(config.grace))
        return 0
    finally:
        sup.seal.close()
        on_supervisor_stop(endpoint)
        signal.set_wakeup_fd(old_wakeup)
        os.close(rfd)
        os.close(wfd)
        holder.close()
