"""Watch a rule pack's folders and say when it changed; run reloads one at a time.

The supervisor runs one :class:`PackWatcher` and, on a change, sends SIGHUP to its workers; each worker
then prepares the new pack and swaps it in only if it passes every gate (see :mod:`fenliu.runtime`).
A pack that ``extends`` a base pack is watched together with its base folders.

A worker's reloads go through a :class:`Coalescer`: however many triggers arrive (signals, changes),
at most one reload runs and one waits, and the waiting one reads the folder as it is when it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

log = logging.getLogger("fenliu.reload")


def pack_folders(path: str | Path) -> list[Path]:
    """The pack folder and, following ``extends``, every base pack folder (cycles stop the walk)."""
    folders: list[Path] = []
    current = Path(path).resolve()
    while current not in folders:
        folders.append(current)
        try:
            manifest = yaml.safe_load((current / "pack.yaml").read_text("utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            break
        base = manifest.get("extends") if isinstance(manifest, dict) else None
        if not isinstance(base, str):
            break
        current = (current / base).resolve()
    return folders


def _is_pack_file(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


class PackWatcher:
    """Calls ``on_change`` (from its own thread) after pack files change, debounced."""

    def __init__(self, path: str | Path, on_change: Callable[[], None], *, debounce_ms: int = 300) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fenliu-pack-watcher", daemon=True)

    def start(self) -> PackWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from watchfiles import watch

        folders = [str(f) for f in pack_folders(self.path) if f.is_dir()]
        if not folders:
            log.warning("nothing to watch", extra={"event": "watch_missing", "path": str(self.path)})
            return
        log.info("watching rule pack", extra={"event": "watch_started", "folders": folders})
        try:
            for changes in watch(
                *folders,
                stop_event=self._stop,
                debounce=self.debounce_ms,
                watch_filter=lambda _change, p: _is_pack_file(p),
                raise_interrupt=False,
            ):
                if self._stop.is_set():
                    break
                log.info("rule pack changed", extra={"event": "pack_changed", "files": len(changes)})
                try:
                    self.on_change()
                except Exception:  # the watcher must outlive a failing callback
                    log.exception("reload callback failed", extra={"event": "reload_callback_failed"})
        except Exception:
            log.exception("pack watcher stopped", extra={"event": "watch_failed"})


class Coalescer:
    """Runs ``fn`` on its own thread when asked: at most one run at a time, and at most one waiting.

    :meth:`request` never blocks (it may be called from a signal handler). Requests that arrive before a
    run starts, or while one runs, are served by one (next) run. A run starts once requests have been
    quiet for ``settle`` seconds, or ``max_wait`` seconds after the first request it serves, whichever
    comes first; so a storm of triggers costs a reload every ``max_wait`` seconds at most, and the last
    one is served within ``settle`` seconds plus one reload.
    """

    def __init__(
        self,
        fn: Callable[[int], object],
        *,
        settle: float = 0.25,
        max_wait: float = 5.0,
        name: str = "fenliu-reload",
    ) -> None:
        self.fn = fn  # called with the number of requests the run serves
        self.settle = settle
        self.max_wait = max_wait
        self.runs = 0
        self._cond = threading.Condition(threading.RLock())  # re-entrant: a signal may interrupt request()
        self._first: float | None = None  # when the oldest request not yet served came
        self._last = 0.0
        self._waiting = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            self._last = now
            self._waiting += 1
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._first is None and not self._closed:
                    self._cond.wait()
                while not self._closed and self._first is not None:
                    due = min(self._last + self.settle, self._first + self.max_wait)
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed:
                    return
                served, self._waiting, self._first = self._waiting, 0, None
            self.runs += 1
            try:
                self.fn(served)
            except Exception:  # the loop must outlive a failing reload
                log.exception("reload failed", extra={"event": "reload_crashed"})
