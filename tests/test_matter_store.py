"""The matter store, one suite over its three backends: memory, SQLite (a file) and PostgreSQL (a real
server, started privately for the session)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fenliu.domain.model import Complainant
from fenliu.matter import (
    MatchSettings,
    MatterStore,
    SchemaTooNew,
    StoreError,
    _sql,
    identity_hashes,
    open_store,
)
from fenliu.matter.events import DecisionFacts
from matter_helpers import GRASS, GRASS_AGAIN, KEY, TWP, WAGE, concurrent_worker, sighting
from pg import PgServer

BACKENDS = ["memory", "sqlite", "postgresql"]
ID = "150626198001011234"
PHONE = "13800000000"


def decided(complaint_id: str, decision_id: str, owner: str = "") -> DecisionFacts:
    return DecisionFacts(complaint_id, decision_id, 0, "", "", "", "", owner, "", "", "")


def _url(backend: str, tmp_path: Path, pg: PgServer | None) -> str:
    if backend == "memory":
        return "memory:"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'matters.db'}"
    assert pg is not None
    return pg.create_database()


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    backend = request.param
    pg = request.getfixturevalue("pg_server") if backend == "postgresql" else None
    url = _url(backend, tmp_path, pg)
    opened: list[MatterStore] = []

    def make(settings: MatchSettings | None = None) -> MatterStore:
        s = open_store(url, settings)
        opened.append(s)
        return s

    make.url = url  # type: ignore[attr-defined]
    make.backend = backend  # type: ignore[attr-defined]
    yield make
    for s in opened:
        s.close()


per_backend = pytest.mark.parametrize("make_store", BACKENDS, indirect=True)


def _dump(url: str, store: MatterStore) -> str:
    """Everything the store holds, as text."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    if url.startswith("postgresql"):
        out = []
        with psycopg.connect(url) as conn:
            for table in ("matters", "complaints", "identities", "scope_buckets"):
                for row in conn.execute(f"SELECT * FROM {table}"):
                    out.append(repr(row))
                    out.extend(bytes(v).decode("utf-8", "replace") for v in row if isinstance(v, bytes))
        return "\n".join(out)
    mem: Any = store
    return repr([(s.to_json(), s.text) for s in mem.complaints.values()])


@per_backend
def test_same_person_same_matter_through_another_channel_links_by_identity(make_store: Any) -> None:
    store = make_store()
    a = store.record(sighting("a", GRASS, complainant={"id_number": ID, "phone": PHONE}))
    b = store.record(
        sighting(
            "b",
            GRASS_AGAIN,
            channel="PHONE",
            received_tier="TOWNSHIP",
            received_at="2026-03-21T09:00:00+08:00",
            complainant={"phone": "138-0000-0000"},
        )
    )
    assert a.new_matter and a.available and not a.evidence
    assert b.matter_id == a.matter_id and not b.new_matter
    assert next(e.kind for e in b.evidence) == "identity"
    assert b.evidence[0].field == "phone" and b.evidence[0].complaint_id == "a"
    f = b.facts
    assert f.prior_complaints == 1
    assert f.channels == ("PHONE", "VISIT")
    assert f.levels == ("TOWNSHIP", "VILLAGE")
    assert f.points == (TWP, TWP + "001")
    assert f.days_since_first == 20
    assert (f.first_point, f.first_level) == (TWP + "001", "VILLAGE")
    fields = b.fields()
    assert fields["matter_channel_count"] == 2 and fields["matter_prior_complaints"] == 1
    assert "identity" in fields["matter_linked_by"].split(",")


@per_backend
def test_same_person_different_matter_stays_apart(make_store: Any) -> None:
    store = make_store()
    a = store.record(sighting("a", GRASS, complainant={"id_number": ID}))
    b = store.record(
        sighting("b", WAGE, complainant={"id_number": ID}, received_at="2026-03-05T09:00:00+08:00")
    )
    assert b.new_matter and b.matter_id != a.matter_id


@per_backend
def test_relative_in_the_same_township_links_by_content_and_not_elsewhere(make_store: Any) -> None:
    store = make_store()
    a = store.record(sighting("a", GRASS, complainant={"phone": PHONE}))
    b = store.record(sighting("b", GRASS_AGAIN, complainant={"phone": "13911112222"}, channel="MOBILE"))
    assert b.matter_id == a.matter_id
    assert b.evidence[0].kind == "content"
    assert (b.evidence[0].similarity or 0) >= MatchSettings().content_similarity
    c = store.record(
        sighting("c", GRASS_AGAIN, region={"township_code": "150626999", "village_code": "150626999001"})
    )
    assert c.new_matter


@per_backend
def test_case_id_links_whatever_the_words(make_store: Any) -> None:
    store = make_store()
    a = store.record(sighting("a", GRASS, existing_case_id="XF-2026-77"))
    b = store.record(sighting("b", WAGE, existing_case_id=" XF-2026-77 "))
    assert b.matter_id == a.matter_id and b.evidence[0].kind == "case_id"
    c = store.record(sighting("c", WAGE, existing_case_id="   "))  # a blank case id names no case
    assert all(e.kind != "case_id" for e in c.evidence)


@per_backend
def test_window_is_configurable_and_older_complaints_do_not_link(make_store: Any) -> None:
    store = make_store(MatchSettings(window_days=30))
    a = store.record(sighting("a", GRASS, complainant={"phone": PHONE}))
    b = store.record(
        sighting("b", GRASS, complainant={"phone": PHONE}, received_at="2026-04-15T09:00:00+08:00")
    )
    assert b.new_matter and b.matter_id != a.matter_id
    c = store.record(
        sighting("c", GRASS, complainant={"phone": PHONE}, received_at="2026-04-20T09:00:00+08:00")
    )
    assert c.matter_id == b.matter_id and c.facts.prior_complaints == 1


@per_backend
def test_recording_again_is_idempotent_and_decisions_are_listed(make_store: Any) -> None:
    store = make_store()
    a = store.record(sighting("a", GRASS, complainant={"phone": PHONE}))
    assert store.set_decision(decided("a", "dec-1"))
    assert not store.set_decision(decided("nope", "dec-x"))
    again = store.record(sighting("a", GRASS, complainant={"phone": PHONE}))
    assert again.matter_id == a.matter_id and again.facts.prior_complaints == 0
    b = store.record(
        sighting("b", GRASS_AGAIN, complainant={"phone": PHONE}, received_at="2026-03-02T09:00:00+08:00")
    )
    assert b.facts.earlier_decision_ids == ("dec-1",)
    assert store.count_matters() == 1
    rows = store.matter(a.matter_id)
    assert [r["complaint_id"] for r in rows] == ["a", "b"] and rows[0]["decision_id"] == "dec-1"
    assert store.matter("m-unknown") == []


@per_backend
def test_the_first_decisions_owner_department_is_kept_for_the_matter(make_store: Any) -> None:
    store = make_store()
    a = store.record(sighting("a", GRASS, complainant={"phone": PHONE}))
    assert a.fields()["matter_first_owner"] == ""
    assert store.set_decision(decided("a", "dec-1", "forestry_grassland"))
    b = store.record(
        sighting(
            "b",
            GRASS_AGAIN,
            complainant={"phone": PHONE},
            channel="PHONE",
            received_at="2026-03-02T09:00:00+08:00",
        )
    )
    assert b.matter_id == a.matter_id and b.fields()["matter_first_owner"] == "forestry_grassland"
    assert store.set_decision(decided("b", "dec-2", "township_government"))  # a later decision: not the first
    early = store.record(  # an earlier complaint arriving late: the first receiver changes, the owner not
        sighting("early", GRASS, complainant={"phone": PHONE}, received_at="2026-02-20T09:00:00+08:00")
    )
    assert early.matter_id == a.matter_id and early.facts.first_owner == "forestry_grassland"
    c = store.record(
        sighting("c", GRASS, complainant={"phone": PHONE}, received_at="2026-03-05T09:00:00+08:00")
    )
    assert c.facts.first_owner == "forestry_grassland" and c.facts.prior_complaints == 3
    new = store.record(sighting("other", WAGE, complainant={"phone": "13900000000"}))
    assert new.new_matter and new.facts.first_owner == ""


def test_a_version_1_sqlite_store_is_migrated_to_the_first_owner(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE fenliu_schema (version INTEGER NOT NULL)")
    for stmt in _sql.MIGRATIONS[0].statements(_sql.SQLITE):
        conn.execute(stmt)
    conn.execute("INSERT INTO fenliu_schema VALUES (1)")
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.applied == [2, 3] and store.schema_version() == 3  # type: ignore[attr-defined]
        store.record(sighting("a", GRASS, complainant={"phone": PHONE}))
        assert store.set_decision(decided("a", "dec-1", "natural_resources"))
        b = store.record(sighting("b", GRASS_AGAIN, complainant={"phone": PHONE}, channel="PHONE"))
        assert b.facts.first_owner == "natural_resources"
    finally:
        store.close()


@per_backend
def test_first_receiver_is_the_earliest_even_when_it_arrives_late(make_store: Any) -> None:
    store = make_store()
    store.record(
        sighting(
            "late",
            GRASS,
            complainant={"phone": PHONE},
            received_tier="BANNER",
            received_at="2026-03-10T09:00:00+08:00",
        )
    )
    early = store.record(sighting("early", GRASS_AGAIN, complainant={"phone": PHONE}))
    assert (early.facts.first_level, early.facts.prior_complaints) == ("VILLAGE", 0)
    third = store.record(
        sighting(
            "third",
            GRASS,
            complainant={"phone": PHONE},
            channel="LETTER",
            received_at="2026-03-20T09:00:00+08:00",
        )
    )
    assert third.facts.first_level == "VILLAGE" and third.facts.prior_complaints == 2
    assert third.facts.days_since_first == 19


@per_backend
def test_no_personal_data_or_text_in_the_store_unless_text_is_kept(make_store: Any) -> None:
    store = make_store()
    person = {"name": "乌兰其其格", "id_number": ID, "phone": PHONE}
    store.record(sighting("a", GRASS, complainant=person))
    dump = _dump(make_store.url, store)
    assert "a" in dump or make_store.backend == "memory"
    for secret in (ID, PHONE, "乌兰其其格", "网围栏", "草场"):
        assert secret not in dump
    keep = MatchSettings(keep_text=True)
    store.record(sighting("t", WAGE, settings=keep, received_at="2026-05-01T09:00:00+08:00"))
    assert "包工头" not in _dump(make_store.url, store)  # a store that keeps no text drops it
    kept = make_store(keep)
    kept.record(sighting("b", WAGE, settings=keep, complainant=person))
    dump = _dump(make_store.url, kept)
    assert "包工头" in dump
    for secret in (ID, PHONE, "乌兰其其格"):
        assert secret not in dump


@per_backend
def test_purge_removes_complaints_past_retention(make_store: Any) -> None:
    store = make_store(MatchSettings(retention_days=365))
    old = store.record(
        sighting("old", GRASS, complainant={"phone": PHONE}, received_at="2024-01-05T09:00:00+08:00")
    )
    new = store.record(sighting("new", WAGE, received_at="2026-03-01T09:00:00+08:00"))
    now = int(new.facts.first_received_at) + 86_400
    assert store.purge(now=now) == 1
    assert store.matter(old.matter_id) == [] and len(store.matter(new.matter_id)) == 1
    assert store.count_matters() == 1
    assert store.purge(now=now) == 0


@per_backend
def test_forget_removes_everything_linked_to_one_identity(make_store: Any) -> None:
    store = make_store()
    a = store.record(sighting("a", GRASS, complainant={"id_number": ID}))
    store.record(sighting("b", GRASS_AGAIN, complainant={"id_number": ID, "phone": PHONE}))
    store.record(sighting("c", GRASS_AGAIN, complainant={"phone": "13911112222"}))  # a relative: stays
    store.record(sighting("d", WAGE, complainant={"phone": PHONE}))
    hashes = tuple(h for _, h in identity_hashes(Complainant(phone=" 138 0000 0000 "), KEY))
    assert store.forget(hashes) == 2  # b and d
    assert [r["complaint_id"] for r in store.matter(a.matter_id)] == ["a", "c"]
    hashes = tuple(h for _, h in identity_hashes(Complainant(id_number=ID.lower()), KEY))
    assert store.forget(hashes) == 1
    assert [r["complaint_id"] for r in store.matter(a.matter_id)] == ["c"]
    assert store.count_matters() == 1


@pytest.mark.parametrize("make_store", ["sqlite", "postgresql"], indirect=True)
def test_a_replica_reads_a_village_again_after_another_writes_or_forgets_in_it(make_store: Any) -> None:
    # two stores on one database, as two replicas: what one holds of a village (PostgreSQL keeps a copy
    # of its buckets per process) never hides what the other wrote or forgot there
    one, two = make_store(), make_store()
    one.record(sighting("a", WAGE, complainant={"phone": "13911112222"}))  # `one` reads the village
    b = two.record(sighting("b", GRASS, complainant={"phone": PHONE}))  # `two` changes its bucket
    c = one.record(sighting("c", GRASS_AGAIN, complainant={"phone": "13733334444"}))
    assert c.matter_id == b.matter_id and c.evidence[0].kind == "content"
    hashes = tuple(h for _, h in identity_hashes(Complainant(phone=PHONE), KEY))
    hashes += tuple(h for _, h in identity_hashes(Complainant(phone="13733334444"), KEY))
    assert two.forget(hashes) == 2  # b and c are gone, and with them their records in the bucket
    d = one.record(sighting("d", GRASS_AGAIN, complainant={"phone": "13655556666"}))
    assert d.new_matter and d.matter_id != b.matter_id
    e = two.record(sighting("e", GRASS, complainant={"phone": "13577778888"}))
    assert e.matter_id == d.matter_id  # and `two` reads what `one` wrote


def test_identity_hash_is_the_decision_logs_and_malformed_values_are_still_used() -> None:
    from fenliu.serving.decision_log import keyed_hash

    assert identity_hashes(Complainant(phone="13800000000"), KEY) == (
        ("phone", keyed_hash(KEY, "phone", PHONE)),
    )
    full_width = identity_hashes(Complainant(phone="１３８００００００００"), KEY)
    assert full_width == identity_hashes(Complainant(phone=PHONE), KEY)
    bad = identity_hashes(Complainant(id_number="12X", phone="abc"), KEY)
    assert [f for f, _ in bad] == ["id_number", "phone"]
    assert all(h.startswith("hmac:") and "12X" not in h for _, h in bad)


@pytest.mark.parametrize("make_store", ["sqlite", "postgresql"], indirect=True)
def test_schema_from_a_newer_fenliu_is_refused_in_one_line(make_store: Any) -> None:
    store = make_store()
    assert store.schema_version() == _sql.SCHEMA_VERSION  # type: ignore[attr-defined]
    store.close()
    assert make_store().applied == []  # type: ignore[attr-defined]  # migrated once
    url = make_store.url
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        conn.execute("INSERT INTO fenliu_schema VALUES (99)")
        conn.commit()
        conn.close()
    else:
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO fenliu_schema VALUES (99)")
    with pytest.raises(SchemaTooNew) as e:
        open_store(url)
    msg = str(e.value)
    assert "\n" not in msg and "99" in msg and "upgrade fenliu" in msg


def test_unreachable_or_unknown_store_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as e:
        open_store("postgresql://u:secret@127.0.0.1:1/x?connect_timeout=1")
    assert "\n" not in str(e.value) and "secret" not in str(e.value) and "cannot reach" in str(e.value)
    with pytest.raises(StoreError, match="unknown matter store"):
        open_store("redis://x")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        open_store(str(tmp_path / "dir.db"))


def test_memory_store_threads_record_one_matter() -> None:
    store = open_store("memory:")
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def go(i: int) -> None:
        barrier.wait()
        ids.append(store.record(sighting(f"t{i}", GRASS, complainant={"phone": PHONE})).matter_id)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and store.count_matters() == 1


@pytest.mark.slow
@pytest.mark.parametrize("person", [True, False], ids=["identity", "content"])
@pytest.mark.parametrize("make_store", ["sqlite", "postgresql"], indirect=True)
def test_two_processes_at_the_same_moment_make_one_matter(make_store: Any, person: bool) -> None:
    """Two processes (for PostgreSQL: two pools, i.e. two replicas) record a complaint on the same
    matter at the same moment, round after round: each round makes exactly one matter."""
    make_store().close()  # migrated before the race
    rounds = 25
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=concurrent_worker, args=(make_store.url, barrier, p, rounds, person, results))
        for p in ("a", "b")
    ]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    a, b = got["a"], got["b"]
    assert a == b, "the two processes saw different matters"
    store = make_store()
    assert store.count_matters() == rounds
    assert all(len(store.matter(m)) == 2 for m in set(a))


def test_the_one_step_minhash_equals_datasketchs_value_for_value() -> None:
    from bench import corpus

    from fenliu.matter import signature as sig

    texts = [f"{c.get('title', '')}\n{c.get('text', '')}" for c in corpus.generate(400, seed=3)]
    texts += [GRASS, GRASS_AGAIN, WAGE, "", "！！", "a", "的的的", "ＡＢＣ１２３ abc"]
    for t in texts:
        assert sig.signature(t) == sig.signature_reference(t)
        assert sig.signature(t) == sig.signature_reference(t)  # again, from the hashes kept


def test_the_kept_shingle_hashes_stay_bounded_and_change_no_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fenliu.matter import signature as sig

    monkeypatch.setattr(sig, "HASHES_KEPT", 40)
    monkeypatch.setattr(sig, "_HASHES", {})
    for t in [GRASS, GRASS_AGAIN, WAGE, GRASS, WAGE]:
        assert sig.signature(t) == sig.signature_reference(t)
        assert len(sig._HASHES) <= 40 + len(sig.shingles(t))


def test_the_closest_candidates_are_a_stable_sorts_first_ones() -> None:
    import numpy as np

    from fenliu.matter._match import top

    rng = np.random.default_rng(1)
    for _ in range(500):
        v = np.round(rng.random(int(rng.integers(1, 3000))), int(rng.integers(1, 4)))  # many ties
        assert (top(v, 16) == np.argsort(-v, kind="stable")[:16]).all()
