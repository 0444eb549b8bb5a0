"""The matter store: remember each matter, recognize it when it comes back through another door.

    from fenliu.matter import open_store, sighting_from_complaint
    store = open_store("sqlite:///var/fenliu/matters.db")        # or postgresql://…, or memory:
    rec = store.record(sighting_from_complaint(complaint, key=hash_key))
    rec.fields()     # matter_id, matter_prior_complaints, … for the enricher to put on the complaint

Exceptions (all :class:`fenliu.domain.errors.FenliuError`):

    StoreError            the store cannot be used; a one-line message, no personal data
    ├── StoreUnavailable  it did not answer (down, slow): go on without history
    └── SchemaTooNew      it was written by a newer fenliu

The store, the matching, privacy and retention are described in docs/matters.md.
"""

from __future__ import annotations

from pathlib import Path

from fenliu.matter._core import (
    Evidence,
    MatchSettings,
    MatterFacts,
    MatterStore,
    Recognition,
    SchemaTooNew,
    Sighting,
    StoreError,
    StoreUnavailable,
    identity_hashes,
    receiving_level,
    receiving_point,
    sighting_from_complaint,
)
from fenliu.matter.guard import GuardedStore
from fenliu.matter.memory import MemoryStore

__all__ = [
    "Evidence",
    "GuardedStore",
    "MatchSettings",
    "MatterFacts",
    "MatterStore",
    "MemoryStore",
    "Recognition",
    "SchemaTooNew",
    "Sighting",
    "StoreError",
    "StoreUnavailable",
    "identity_hashes",
    "open_store",
    "receiving_level",
    "receiving_point",
    "sighting_from_complaint",
    "sqlite_path",
]


def open_store(url: str, settings: MatchSettings | None = None) -> MatterStore:
    """Open (and migrate) the store at ``url``: ``sqlite:///PATH`` (or a plain file path),
    ``postgresql://…``, or ``memory:``. Raises :class:`StoreError` with a one-line message."""
    if url.startswith(("postgresql://", "postgres://")):
        from fenliu.matter.postgres import PostgresStore

        return PostgresStore(url, settings)
    if url in ("memory:", "memory://"):
        return MemoryStore(settings)
    from fenliu.matter.sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(url), settings)


def sqlite_path(url: str) -> Path:
    """The file of an SQLite store's URL (``sqlite:///PATH`` or a plain path); :class:`StoreError` for
    a URL of no store this fenliu knows."""
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        path = path[2:] if path.startswith("//") else path  # sqlite:///abs, sqlite:////abs, sqlite:rel
        path = "/" + path.lstrip("/") if path.startswith("/") else path
    elif "://" in url:
        raise StoreError(
            f"unknown matter store {url.split('://')[0]}://: use sqlite:///PATH or postgresql://…"
        )
    else:
        path = url
    if not path:
        raise StoreError("the sqlite store needs a file: sqlite:///PATH")
    return Path(path)
