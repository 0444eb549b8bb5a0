"""Structured logs: one JSON object per line on stderr.

Every line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``event`` (the log message, a short
snake_case name such as ``worker_started``, or the ``event`` extra field when a record has one, the
message then following as ``message``), ``pid`` and ``logger``, then the record's extra fields::

    log.info("worker_exited", extra={"worker": 2, "worker_pid": 4711, "exitcode": -9})
    {"ts": "2025-01-01T00:00:00.000Z", "level": "INFO", "event": "worker_exited", "pid": 4700, ...}

A log line never carries a stack trace, a submitted value or personal data: for an exception only its
type and the innermost frame (``file:line``) are written, since exception messages may quote values;
and every string of a line is masked (:func:`fenliu.domain.personal.mask`), so that an id number or a mobile
number typed into any field never reaches a log in clear.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from typing import IO, Final

from fenliu.domain.model import Json, JsonValue
from fenliu.domain.personal import mask, mask_number

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is written out.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys() | {"message", "asctime"}
)

_HANDLER_MARK: Final = "_fenliu_json"


def _plain(value: object) -> JsonValue:
    """A JSON-ready copy of ``value`` whose every string is masked (:func:`fenliu.domain.personal.mask`)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return mask_number(value)  # a phone typed into a number
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, event, pid, logger, then extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        message = record.getMessage()
        event = getattr(record, "event", None)
        out: Json = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "event": mask(str(event) if event else message),
            "pid": record.process if record.process is not None else os.getpid(),
            "logger": record.name,
        }
        if event and message != event:
            out["message"] = mask(message)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = _plain(value)
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            out["exc_type"] = exc_type.__name__
            frames = traceback.extract_tb(tb) if tb is not None else []
            if frames:
                last = frames[-1]
                out["exc_where"] = f"{os.path.basename(last.filename)}:{last.lineno}"
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def setup_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> logging.Logger:
    """Send the ``fenliu`` loggers to ``stream`` (stderr) as JSON lines. Safe to call twice."""
    logger = logging.getLogger("fenliu")
    logger.setLevel(level)
    for h in list(logger.handlers):
        if getattr(h, _HANDLER_MARK, False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)
    logger.propagate = False
    return logger
