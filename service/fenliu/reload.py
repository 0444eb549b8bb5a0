"""Watch a rule pack's folders and say when it changed.

The supervisor runs one :class:`PackWatcher` and, on a change, sends SIGHUP to its workers; each worker
then prepares the new pack and swaps it in only if it passes every gate (see :mod:`fenliu.runtime`).
A pack that ``extends`` a base pack is watched together with its base folders.
"""

from __future__ import annotations

import logging
import threading
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
