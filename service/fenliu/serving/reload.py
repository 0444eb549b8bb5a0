"""Watch a rule pack's folders and say when it changed; run reloads one at a time.

The supervisor runs one :class:`PackWatcher` and, on a change, sends SIGHUP to its workers; each worker
then prepares the new pack and swaps it in only if it passes every gate (see :mod:`fenliu.serving.runtime`).
A pack that ``extends`` a base pack is watched together with its base folders.

A worker's reloads go through a :class:`Coalescer`: however many triggers arrive (signals, changes),
at most one reload runs and one waits, and the waiting one reads the folder as it is when it starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

log = logging.getLogger("fenliu.reload")


MANIFEST_BYTES = 1 << 20  # a pack.yaml larger than this is not read here (the loader refuses it too)


def pack_folders(path: str | Path) -> list[Path]:
    """The pack folder and, following ``extends``, every base pack folder (cycles stop the walk)."""
    folders: list[Path] = []
    current = Path(path).resolve()
    while current not in folders:
        folders.append(current)
        manifest = current / "pack.yaml"
        try:
            if not manifest.is_file() or manifest.stat().st_size > MANIFEST_BYTES:
                break
            doc = yaml.safe_load(manifest.read_text("utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError, RecursionError):
            break
        base = doc.get("extends") if isinstance(doc, dict) else None
        if not isinstance(base, str):
            break
        current = (current / base).resolve()
    return folders


def _is_pack_file(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


Fingerprint = tuple[tuple[str, int, int, int, int], ...]


def fingerprint(folders: list[Path]) -> Fingerprint:
    """What the pack files of ``folders`` are, from ``stat`` alone: each folder's identity, each file's
    path, size, modification time and inode. Any usual edit or replacement changes it."""
    out: list[tuple[str, int, int, int, int]] = []
    for folder in folders:
        try:
            st = folder.stat()
        except OSError:
            out.append((str(folder), -1, -1, -1, -1))
            continue
        out.append((str(folder), st.st_dev, st.st_ino, 0, 0))
        for base, _dirs, names in os.walk(folder):
            for name in names:
                if _is_pack_file(name):
                    full = os.path.join(base, name)
                    try:
                        fs = os.stat(full)
                    except OSError:
                        continue
                    out.append((full, fs.st_size, fs.st_mtime_ns, fs.st_ino, fs.st_ctime_ns))
    return tuple(sorted(out))


class PackWatcher:
    """Calls ``on_change`` (from its own thread) after pack files change, debounced.

    Changes are watched with inotify (``watchfiles``) and, once a second, checked against the folders'
    :func:`fingerprint`, which also follows the path again: a folder deleted and copied back, moved
    away and replaced, swapped behind a symbolic link or rewritten by ``git checkout`` is noticed even
    when inotify is left watching the old one. The watch is then set up again on what the path names now
    (logged as ``watch_rearmed``, with the reason) and ``on_change`` is called. While the folder is
    missing, the watcher waits for it.
    """

    def __init__(
        self,
        path: str | Path,
        on_change: Callable[[], None],
        *,
        debounce_ms: int = 300,
        poll_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self.poll_s = poll_s
        self.rearmed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fenliu-pack-watcher", daemon=True)

    def start(self) -> PackWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _changed(self, files: int, via: str) -> None:
        log.info("rule pack changed", extra={"event": "pack_changed", "files": files, "via": via})
        try:
            self.on_change()
        except Exception:  # the watcher must outlive a failing callback
            log.exception("reload callback failed", extra={"event": "reload_callback_failed"})

    def _folders(self) -> list[Path]:
        return [f for f in pack_folders(self.path) if f.is_dir()]

    def _run(self) -> None:
        reason = ""
        missing_logged = False
        while not self._stop.is_set():
            folders = self._folders()
            if not folders:
                if not missing_logged:
                    log.warning("nothing to watch", extra={"event": "watch_missing", "path": str(self.path)})
                    missing_logged = True
                reason = reason or "folder_missing"
                self._stop.wait(self.poll_s / 2)
                continue
            missing_logged = False
            names = [str(f) for f in folders]
            if reason:
                self.rearmed += 1
                log.info(
                    "watching rule pack again",
                    extra={"event": "watch_rearmed", "folders": names, "reason": reason},
                )
                self._changed(0, reason)
            else:
                log.info("watching rule pack", extra={"event": "watch_started", "folders": names})
            reason = self._watch(folders)

    def _watch(self, folders: list[Path]) -> str:
        """Watch ``folders`` until stopped (returns "") or until they must be watched anew (the reason)."""
        from watchfiles import watch

        known = fingerprint(folders)
        roots = {str(f) for f in folders}
        next_poll = time.monotonic() + self.poll_s
        try:
            for changes in watch(
                *folders,
                stop_event=self._stop,
                debounce=self.debounce_ms,
                watch_filter=lambda _change, p: _is_pack_file(p) or p in roots,
                raise_interrupt=False,
                rust_timeout=int(self.poll_s * 1000),
                yield_on_timeout=True,
            ):
                if self._stop.is_set():
                    return ""
                if changes:
                    self._changed(len(changes), "watch")
                    known = fingerprint(folders)
                    if any(p in roots for _change, p in changes):
                        return "folder_replaced"
                if time.monotonic() < next_poll:
                    continue
                next_poll = time.monotonic() + self.poll_s
                if [f for f in self._folders()] != folders:
                    return "path_moved"
                now = fingerprint(folders)
                if now != known:
                    # inotify did not report it: the folder was replaced under the watch, or is not
                    # watchable; watch what the path names now.
                    return "changed_unwatched"
        except Exception as e:
            log.warning(
                "pack watch interrupted", extra={"event": "watch_failed", "exc_type": type(e).__name__}
            )
            self._stop.wait(self.poll_s / 2)
            return "watch_failed"
        return ""


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
