"""督办: the overdue listing of one township reads its index, never the whole store, and lists exactly
the matters past a deadline without its event (SQLite and PostgreSQL).

The store's ``matter_state`` table is filled with the benchmark's generated states (``bench/overdue.py``,
a few thousand here); the test counts the overdue matters of each township itself from the same states
and compares, and reads the database's own query plan. How fast the listing is with a million matters is
measured by ``python -m bench.overdue`` (docs/performance.md), never asserted here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from bench import overdue as bench_overdue

from fenliu.matter import open_store

N = 6000
OPEN_SHARE = 0.2


def _expected() -> tuple[Counter[str], Counter[tuple[str, str]], Counter[str]]:
    """Per township: matters past a deadline; per (township, deadline): how many past it; RED ones."""
    by_township: Counter[str] = Counter()
    by_deadline: Counter[tuple[str, str]] = Counter()
    red: Counter[str] = Counter()
    for st, _received in bench_overdue.states(N, OPEN_SHARE):
        past = [
            name
            for name, due in st.deadlines.items()
            if st.status == "OPEN" and name not in st.met and due < bench_overdue.AS_OF
        ]
        if past:
            by_township[st.township] += 1
            red[st.township] += st.colour == "RED"
            for name in past:
                by_deadline[(st.township, name)] += 1
    return by_township, by_deadline, red


@pytest.fixture(params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, Path | None]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_server").create_database()
        open_store(url).close()
        bench_overdue.fill_postgresql(url, N, OPEN_SHARE)
        return request.param, url, None
    db = tmp_path / "matters.db"
    url = f"sqlite:///{db}"
    open_store(url).close()
    bench_overdue.fill_sqlite(db, N, OPEN_SHARE)
    return request.param, url, db


def test_one_townships_overdue_are_listed_from_its_index(filled: tuple[str, str, Path | None]) -> None:
    backend, url, db = filled
    text = bench_overdue.plan(backend, url, db)
    assert bench_overdue.uses_the_index(backend, text), text
    assert "matter_state_township_due" in text


def test_the_listing_is_exactly_the_matters_past_a_deadline(filled: tuple[str, str, Path | None]) -> None:
    _backend, url, _db = filled
    by_township, by_deadline, red = _expected()
    assert sum(by_township.values()) > 100 and len(by_township) == len(bench_overdue.TOWNSHIPS)
    store = open_store(url)
    try:
        as_of = bench_overdue.AS_OF
        for township in bench_overdue.TOWNSHIPS:
            items = list(store.overdue(as_of, township=township))
            assert len(items) == by_township[township], township
            assert all(i.state.township == township and i.overdue for i in items)
            dues = [min(due for _n, due, _p in i.overdue) for i in items]
            assert dues == sorted(dues), "the earliest due first"
            past = Counter((township, name) for i in items for name, _due, _p in i.overdue)
            assert past == Counter({k: v for k, v in by_deadline.items() if k[0] == township})
            assert all(p == as_of - due for i in items for _n, due, p in i.overdue)
            reds = list(store.overdue(as_of, township=township, colour="RED"))
            assert len(reds) == red[township] and all(i.state.colour == "RED" for i in reds)
            assert len(list(store.overdue(as_of, township=township, limit=5))) == min(
                5, by_township[township]
            )
        counts = store.open_counts(as_of)
        assert sum(c.overdue for c in counts) == sum(by_township.values())
    finally:
        store.close()
