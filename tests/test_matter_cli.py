"""``fenliu store …``: migrate, purge, forget (personal data only on standard input, never printed) and
link-eval on the labelled pairs the project ships (the floors: precision ≥ 0.97, recall ≥ 0.90)."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest

from fenliu.cli.commands import main
from fenliu.matter import open_store
from matter_helpers import GRASS, GRASS_AGAIN, KEY, WAGE, sighting
from pg import PgServer

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "corpus" / "matter_pairs.jsonl"
PHONE = "13800000000"


def test_migrate_creates_the_schema_once_on_sqlite_and_postgresql(
    tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in (f"sqlite:///{tmp_path / 'm.db'}", pg_server.create_database()):
        assert main(["store", "migrate", url]) == 0
        assert "schema version 3 (applied 1, 2, 3)" in capsys.readouterr().out
        assert main(["store", "migrate", url]) == 0
        assert "nothing to apply" in capsys.readouterr().out


def test_migrate_of_a_newer_store_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "m.db"
    open_store(str(db)).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO fenliu_schema VALUES (7)")
    assert main(["store", "migrate", str(db)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "schema version 7" in err


def test_forget_reads_the_phone_from_stdin_and_prints_no_personal_data(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = str(tmp_path / "m.db")
    store = open_store(db)
    store.record(sighting("a", GRASS, complainant={"phone": PHONE}))
    store.record(sighting("b", GRASS_AGAIN, complainant={"phone": "13911112222"}))
    store.close()
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    monkeypatch.setattr("sys.stdin", io.StringIO("138 0000 0000\n"))
    assert main(["store", "forget", db, "--phone", "--key-file", str(key_file)]) == 0
    out = capsys.readouterr()
    assert "removed 1 complaint" in out.out
    for text in (out.out, out.err, caplog.text):
        assert PHONE not in text and "0000" not in text
    store = open_store(db)
    assert store.count_matters() == 1
    store.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["store", "forget", db, "--id-number", "--key-file", str(key_file)]) == 1
    assert "standard input" in capsys.readouterr().err


def test_purge_uses_the_retention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "m.db")
    store = open_store(db)
    store.record(sighting("old", WAGE, received_at="2020-01-01T09:00:00+08:00"))
    store.record(sighting("new", GRASS))
    store.close()
    assert main(["store", "purge", db]) == 0
    assert "removed 1 complaint" in capsys.readouterr().out
    assert main(["store", "purge", db, "--retention-days", "1"]) == 0
    assert "removed 1 complaint" in capsys.readouterr().out


def test_the_shipped_pairs_are_many_varied_and_labelled() -> None:
    pairs = [json.loads(line) for line in PAIRS.open(encoding="utf-8")]
    assert len(pairs) >= 600
    kinds = {p["kind"] for p in pairs}
    assert {
        "other_channel",
        "reworded",
        "relative",
        "same_person_other_matter",
        "same_village_other_matter",
    } <= kinds
    texts = {p[x]["text"] for p in pairs for x in ("a", "b")}
    assert len(texts) >= 190  # hand-written, not one template
    starts = {t[:4] for t in texts}
    assert len(starts) >= 120


def test_link_eval_on_the_shipped_pairs_meets_the_floors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "link-eval", str(PAIRS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] >= 600 and not report["errors"]
    assert report["precision"] >= 0.97 and report["recall"] >= 0.90
    assert report["per_kind"]["relative"]["linked"] > 0


def test_link_eval_fails_below_the_floors(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["store", "link-eval", str(PAIRS), "--content-similarity", "0.9", "--identity-similarity", "0.9"]
        )
        == 1
    )
    assert "below the floors" in capsys.readouterr().err


def test_link_eval_of_a_missing_or_bad_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", "link-eval", str(tmp_path / "none.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    assert main(["store", "link-eval", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not JSON Lines" in err and err.count("\n") == 1
