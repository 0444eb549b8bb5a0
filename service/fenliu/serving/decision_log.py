"""The decision log: every decision as one JSON line, without the complainant's personal data.

Each line holds the decision id, the time, the pack (name, revision, digest), the complaint with the
complainant's name, id number and phone replaced by keyed hashes (HMAC-SHA256, ``"hmac:<16 hex>"``),
and the decision with its trace. The format is documented in ``docs/decision-log.md``.

Files rotate by size with the semantics of :class:`logging.handlers.RotatingFileHandler`: when a line
would take ``path`` past ``max_bytes``, ``path.N-1`` becomes ``path.N`` … ``path`` becomes ``path.1``
and the oldest beyond ``backups`` is deleted. ``max_bytes=0`` never rotates.

Threads and processes: several threads and several worker processes may share one log. Each line is
written with a single ``write(2)`` on an ``O_APPEND`` descriptor while holding an exclusive
``flock(2)`` on ``path + ".lock"``; rotation happens under that lock, and a process that finds the file
it holds open was rotated away by another process reopens ``path``. So all workers write one set of
files, whose size stays bounded by ``max_bytes * (backups + 1)`` however many workers come and go.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fenliu.domain import fields as F
from fenliu.domain import model
from fenliu.domain.personal import mask, mask_number
from fenliu.i18n import _

if TYPE_CHECKING:
    import grpc

    from fenliu.serving.metrics import Metrics

__all__ = [
    "FORMAT_VERSION",
    "KEY_ENV",
    "MIN_KEY_BYTES",
    "DecisionLog",
    "check_writable",
    "entry",
    "keyed_hash",
    "load_hash_key",
]

FORMAT_VERSION: Final = 1
MIN_KEY_BYTES: Final = 16
KEY_ENV: Final = "FENLIU_DECISION_LOG_KEY"
HASH_PREFIX: Final = "hmac:"
HASH_HEX_CHARS: Final = 16

#: Complaint fields that hold free text (the citizen's words); ``redact_text`` replaces them.
TEXT_FIELDS: Final = ("title", "text", "category_hint")

_log = logging.getLogger(__name__)


def _normalize(field: str, value: str) -> str:
    v = value.strip()
    if field in ("id_number", "phone"):
        v = "".join(v.split()).replace("-", "").upper()
    return v


def keyed_hash(key: bytes, field: str, value: str) -> str:
    """``"hmac:" + hex(HMAC-SHA256(key, field + "\\0" + normalized value))[:16]``.

    ``id_number`` and ``phone`` are normalized (spaces and dashes dropped, upper case), every field is
    stripped, so that one person's entries can be linked by whoever holds the key, and by nobody else.
    """
    msg = f"{field}\x00{_normalize(field, value)}".encode()
    return HASH_PREFIX + hmac.new(key, msg, hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


def load_hash_key(
    key_file: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> bytes:
    """The HMAC key: the bytes of ``key_file`` (surrounding whitespace dropped) if given, else the
    environment variable ``FENLIU_DECISION_LOG_KEY`` (UTF-8). Every worker must use the same key.

    Raises ValueError when there is none or it is shorter than 16 bytes. Make one with
    ``head -c 32 /dev/urandom | base64 > key; chmod 600 key``.
    """
    environ = os.environ if env is None else env
    if key_file is not None:
        key = Path(key_file).read_bytes().strip()
        where = _("key file {path}").format(path=key_file)
    elif environ.get(KEY_ENV):
        key = environ[KEY_ENV].strip().encode()
        where = f"${KEY_ENV}"
    else:
        raise ValueError(
            _("the decision log needs a hash key: give a key file or set ${env}").format(env=KEY_ENV)
        )
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            _("the decision-log hash key ({where}) must be at least {n} bytes").format(
                where=where, n=MIN_KEY_BYTES
            )
        )
    return key


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` naming ``path`` and why, if the decision log cannot be appended to there."""
    target = Path(path)
    try:
        if not target.parent.exists():
            target.parent.mkdir(parents=True)
        for p in (target, Path(str(target) + ".lock")):
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as e:
        raise ValueError(
            _("cannot write the decision log {path}: {reason}").format(
                path=path, reason=e.strerror or type(e).__name__
            )
            + (f" ({e.filename})" if e.filename and str(e.filename) != str(path) else "")
        ) from None


def _plain(v: object) -> object:
    """A JSON-ready copy of ``v`` whose every string is masked (:func:`fenliu.domain.personal.mask`), and
    every number shaped like personal data (:func:`~fenliu.domain.personal.mask_number`). The concrete
    types come before the ``Mapping`` ABC, whose check is slow: a line holds a few hundred values."""
    if isinstance(v, str):
        return mask(v)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int | float):
        return mask_number(v)
    if isinstance(v, list | tuple | set | frozenset):
        return [_plain(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict | Mapping):
        return {mask(str(k)): _plain(x) for k, x in v.items()}
    return v


_NOT_LOGGED: Final = frozenset(
    ("received_at_given", "evidence", "enriched", *(f.name for f in F.COMPLAINT_TABLE if f.derived))
)
#: The personal fields of the complainant (the field table's), logged only as keyed hashes.
_PERSONAL: Final = tuple(f.proto.split(".", 1)[1] for f in F.COMPLAINT_TABLE if f.personal)


def _complaint(c: model.Complaint, key: bytes, redact_text: bool) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        if f.name in _NOT_LOGGED:  # derived ones are in the decision (suggestions, notes)
            continue
        if isinstance(v, model.Complainant):
            person = {pf: keyed_hash(key, pf, getattr(v, pf)) for pf in _PERSONAL if getattr(v, pf, "")}
            if person:
                out[f.name] = person
            continue
        if f.name == "receiving_point" and not v:  # given by few front ends: logged when given
            continue
        if redact_text and f.name in TEXT_FIELDS and isinstance(v, str):
            out[f.name + "_length"] = len(v)
            continue
        out[f.name] = _plain(v)
    if not c.received_at_given:
        out["received_at_defaulted"] = True
    return out


def entry(
    decision: model.Decision, complaint: model.Complaint | None, *, hash_key: bytes, redact_text: bool = True
) -> dict[str, Any]:
    """The log entry of one decision, as a JSON-ready dict (see docs/decision-log.md)."""
    pack = decision.outcome.pack
    d: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "decision_id": decision.decision_id,
        "time": decision.decided_at.isoformat(),
        "pack": pack.to_dict(),
        "complaint": _complaint(complaint, hash_key, redact_text) if complaint is not None else None,
        # The n-grams that pushed the text model are pieces of the citizen's own words (a name may be
        # among them): the log keeps the model's reading, not them (nor works them out). The lexicon's
        # entries are the pack's.
        "decision": _plain(decision.to_dict(trace=True, model_words=False)),
    }
    return d


class DecisionLog:
    """Appends one JSON line per decision to ``path``, rotating by size; thread- and process-safe.

    ``hash_key`` (at least 16 bytes; 32 random bytes recommended) keys the HMAC of personal data: keep
    it secret and stable, or hashes of one person will not match across restarts. ``redact_text``
    (the default) replaces the title, text and category hint by their lengths (``title_length`` …):
    citizens write names and phone numbers into their own words, so the log holds no free text unless
    it is asked to (``redact_text=False``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int,
        backups: int,
        hash_key: bytes,
        redact_text: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        if not isinstance(hash_key, bytes | bytearray) or len(hash_key) < MIN_KEY_BYTES:
            raise ValueError(f"hash_key must be at least {MIN_KEY_BYTES} bytes")
        if max_bytes < 0 or backups < 0:
            raise ValueError("max_bytes and backups must not be negative")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.redact_text = redact_text
        self._metrics = metrics
        self._key = bytes(hash_key)
        self._lock_path = Path(str(self.path) + ".lock")
        self._lock = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._lock_fd = -1
        self.errors = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    # -- files

    def _open(self) -> None:
        """(Re)open both descriptors; after a fork the child must not share the parent's lock."""
        self._close()
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._pid = os.getpid()

    def _close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                with suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1

    def _reopen_if_rotated(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        mine = os.fstat(self._fd)
        if st is None or (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev):
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = Path(f"{self.path}.{i}")
                if src.exists():
                    os.replace(src, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:  # RotatingFileHandler with backupCount=0 never rotates; we truncate instead, keeping the bound
            os.truncate(self.path, 0)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    # -- writing

    def line(self, decision: model.Decision, complaint: model.Complaint | None) -> bytes:
        """The bytes :meth:`write` appends for this decision (one JSON object and a newline)."""
        e = entry(decision, complaint, hash_key=self._key, redact_text=self.redact_text)
        return (json.dumps(e, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()

    def write(self, decision: model.Decision, complaint: model.Complaint | None = None) -> bool:
        """Append the decision's line. Never raises for I/O trouble: returns False, logs and counts it."""
        data = self.line(decision, complaint)
        try:
            self._append(data)
        except OSError as e:
            self._failed(e)
            return False
        return True

    def __call__(
        self,
        method: str,
        complaint: model.Complaint | None,
        decision: model.Decision | None,
        code: grpc.StatusCode,
    ) -> None:
        """Use the log as a servicer observer: writes each decision, ignores failed items."""
        del method, code
        if decision is not None:
            self.write(decision, complaint)

    def _append(self, data: bytes) -> None:
        if self._pid != os.getpid():  # forked: fresh lock and descriptors of our own
            self._lock = threading.Lock()
            self._open()
        with self._lock:
            if self._fd < 0:
                self._open()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._reopen_if_rotated()
                if self.max_bytes > 0:
                    size = os.fstat(self._fd).st_size
                    if size > 0 and size + len(data) > self.max_bytes:
                        self._rotate()
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _failed(self, e: OSError) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            _log.error(
                "decision_log_write_failed",
                extra={
                    "path": str(self.path),
                    "error": e.strerror or type(e).__name__,
                    "lines_lost": self.errors,
                },
            )
        with suppress(Exception):  # metrics must never break logging
            if self._metrics is not None:
                self._metrics.record_decision_log_error()

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
