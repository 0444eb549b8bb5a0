"""The live rule pack of a process, swapped atomically on reload.

A new pack goes live only if it loads, compiles, passes the lint's error checks and all of its own test
cases; otherwise the old pack keeps serving and the refusal comes back with every problem. Each
decision is made wholly by one prepared pack (a :class:`~fenliu.engine.decider.Decider`), whose name, revision and
digest the decision carries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from fenliu.authoring.cases import run_cases
from fenliu.domain.errors import NoPackError, PackError, Problem
from fenliu.domain.model import Complaint, Decision, PackId
from fenliu.engine.decider import Decider
from fenliu.packs.load import load_pack, revision_kept

log = logging.getLogger("fenliu.runtime")


@dataclass(frozen=True, slots=True)
class PackInfo:
    name: str
    revision: str
    digest: str
    loaded_at: datetime
    rule_count: int
    categories: list[tuple[str, str]]
    path: str

    @property
    def id(self) -> PackId:
        return PackId(self.name, self.revision, self.digest)


#: At most this many problems of a refused attempt are kept (``GetRulePack`` carries them).
MAX_PROBLEMS: Final = 50
#: Files larger than this are not hashed for "the files that changed" (no pack file is this large).
_HASH_LIMIT: Final = 64 << 20


@dataclass(frozen=True, slots=True)
class ReloadAttempt:
    """The last attempt of a process to load its rules folder: at start, on a change, on SIGHUP."""

    at: datetime
    outcome: str  # "LOADED", "REFUSED" or "UNCHANGED"
    pack: PackId | None  # the pack it read, when it read far enough to know it
    problems: tuple[str, ...] = ()
    changed_files: tuple[str, ...] = ()  # against the pack that served before
    warnings: tuple[str, ...] = ()


def file_hashes(path: str | Path) -> dict[str, str]:
    """Every regular file under ``path`` (links to folders not followed) → its SHA-256, by relative name."""
    root = Path(path)
    out: dict[str, str] = {}
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            f = Path(folder) / name
            if name.startswith(".") or f.is_symlink() or not f.is_file() or f.stat().st_size > _HASH_LIMIT:
                continue
            try:
                out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
            except OSError:
                continue
        if len(out) > 5_000:
            break
    return out


def changed_files(before: dict[str, str], after: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n)))


@dataclass(slots=True)
class ReloadResult:
    ok: bool
    pack: PackId | None
    problems: list[Problem] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unchanged: bool = False

    def summary(self) -> str:
        if self.ok:
            return (
                f"loaded {self.pack.name} {self.pack.revision} ({self.pack.digest})"
                if self.pack
                else "loaded"
            )
        parts = [str(p) for p in self.problems] + self.failures
        return (
            "refused: " + "; ".join(parts[:20]) + (f" (+{len(parts) - 20} more)" if len(parts) > 20 else "")
        )


def prepare(
    path: str | Path, *, memoize: bool = True, run_tests: bool = True, run_lint: bool = True
) -> tuple[Decider | None, ReloadResult]:
    """Load, compile, lint and test a pack; return a ready decider, or None with the reasons.

    ``run_lint=False`` and ``run_tests=False`` skip those gates, for a pack known to have passed them
    (a sealed copy of the serving pack, checked by digest).
    """
    try:
        pack = load_pack(path)
        decider = Decider(pack, memoize=memoize)
    except PackError as e:
        return None, ReloadResult(False, None, e.problems)
    pid = decider.id
    problems: list[Problem] = []
    if run_lint:
        try:
            from fenliu.authoring import lint as _lint  # the authoring lint (errors block a reload)

            problems = [p for p in _lint.lint(pack, decider.compiled) if p.severity == "error"]
        except ImportError:  # pragma: no cover - lint is part of the package
            problems = []
    if problems:
        decider.close()
        return None, ReloadResult(False, pid, problems)
    if run_tests:
        report = run_cases(pack, decider)
        if report.failures:
            decider.close()
            return None, ReloadResult(False, pid, [], [f.render() for f in report.failures])
        from fenliu.authoring.score import check_floors  # the text step's floors on the pack's test split

        floors = check_floors(pack, decider)
        if floors:
            decider.close()
            return None, ReloadResult(False, pid, floors)
    return decider, ReloadResult(True, pid)


class Triage:
    """Holds the process's live pack. ``decide`` is safe from many threads."""

    def __init__(self, decider: Decider | None = None, *, path: str = "", memoize: bool = True) -> None:
        self._decider = decider
        self._info: PackInfo | None = self._make_info(decider, path) if decider else None
        self._swap = threading.Lock()
        self._listeners: list[Callable[[PackInfo], None]] = []
        self._memoize = memoize
        self._files: dict[str, str] = file_hashes(path) if decider and path else {}
        self._last: ReloadAttempt | None = (
            ReloadAttempt(datetime.now(UTC), "LOADED", decider.id) if decider is not None else None
        )

    @classmethod
    def empty(cls, *, memoize: bool = True) -> Triage:
        return cls(None, memoize=memoize)

    @classmethod
    def from_path(
        cls, path: str | Path, *, memoize: bool = True, run_tests: bool = True, run_lint: bool = True
    ) -> Triage:
        decider, result = prepare(path, memoize=memoize, run_tests=run_tests, run_lint=run_lint)
        if decider is None:
            raise PackError(
                result.problems or [Problem(str(path), 0, "", "tests-failed", f) for f in result.failures]
            )
        return cls(decider, path=str(path), memoize=memoize)

    @staticmethod
    def _make_info(decider: Decider, path: str) -> PackInfo:
        pack = decider.pack
        cats = [(code, str(row.get("name", code))) for code, row in pack.categories.items()]
        return PackInfo(pack.name, pack.revision, pack.digest, datetime.now(UTC), len(pack.rules), cats, path)

    def add_listener(self, fn: Callable[[PackInfo], None]) -> None:
        self._listeners.append(fn)
        if self._info is not None:
            fn(self._info)

    def info(self) -> PackInfo | None:
        return self._info

    def last_attempt(self) -> ReloadAttempt | None:
        """What happened at the last attempt to load the rules folder (``None`` before any)."""
        return self._last

    @property
    def decider(self) -> Decider | None:
        return self._decider

    def decide(self, complaint: Complaint) -> Decision:
        decider = self._decider  # one read: the whole decision comes from this pack
        if decider is None:
            raise NoPackError()
        return decider.decide(complaint)

    def load(self, path: str | Path) -> ReloadResult:
        """Prepare the pack at ``path`` and swap it in if it passes every gate."""
        with self._swap:
            decider, result = prepare(path, memoize=self._memoize)
            files = file_hashes(path)
            changed = changed_files(self._files, files)
            now = datetime.now(UTC)
            if decider is None:
                problems = [str(p) for p in result.problems] + result.failures
                self._last = ReloadAttempt(
                    now, "REFUSED", result.pack, tuple(problems[:MAX_PROBLEMS]), changed
                )
                log.warning(
                    "pack refused",
                    extra={
                        "event": "pack_refused",
                        "path": str(path),
                        "errors": [str(p) for p in result.problems] + result.failures,
                    },
                )
                return result
            old = self._decider
            if old is not None and old.id == decider.id:
                decider.close()
                result.unchanged = True
                self._last = ReloadAttempt(now, "UNCHANGED", decider.id)
                return result
            warnings: tuple[str, ...] = ()
            kept = revision_kept(old.id, decider.id) if old is not None else None
            if kept is not None:
                warnings = (kept,)
                log.warning(
                    kept,  # the message in the server's language; the event is the same in every one
                    extra={
                        "event": "pack_revision_kept",
                        "revision": decider.id.revision,
                        "files": list(changed),
                    },
                )
            self._decider = decider
            self._info = self._make_info(decider, str(path))
            self._files = files
            self._last = ReloadAttempt(now, "LOADED", decider.id, (), changed, warnings)
            info = self._info
            if old is not None:
                old.close()
        log.info(
            "pack loaded",
            extra={
                "event": "pack_loaded",
                "pack": info.name,
                "revision": info.revision,
                "digest": info.digest,
            },
        )
        for fn in self._listeners:
            fn(info)
        return result
