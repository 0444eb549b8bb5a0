"""fenliu.serving.decision_log: one JSON line per decision, no personal data, size rotation, threads, processes."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest

from fenliu import Complaint, Decision, Triage, complaint_from_dict
from fenliu.serving import decision_log, metrics
from fenliu.serving.decision_log import DecisionLog, keyed_hash, load_hash_key

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "rules" / "wushen"
KEY = b"0123456789abcdef0123456789abcdef"

NAME = "欧阳娜仁花"
ID_NUMBER = "15062719800101002X"
PHONE = "13947712345"
PERSON = {"name": NAME, "id_number": ID_NUMBER, "phone": PHONE}


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage.from_path(PACK)


@pytest.fixture
def m() -> metrics.Metrics:
    return metrics.Metrics()


def decide(triage: Triage, data: dict[str, Any]) -> tuple[Complaint, Decision]:
    c = complaint_from_dict(data)
    return c, triage.decide(c)


def read_lines(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.parent.glob(path.name + "*"))
    out: list[dict[str, Any]] = []
    for f in files:
        if f.name.endswith(".lock"):
            continue
        out.extend(json.loads(line) for line in f.read_text(encoding="utf-8").splitlines())
    return out


# ----------------------------------------------------------------------------------------------------
# Format


def test_line_holds_decision_pack_masked_complaint_and_trace(triage: Triage, tmp_path: Path) -> None:
    c, d = decide(triage, {"id": "A-1", "title": "排水", "text": "邻居排水纠纷", "complainant": PERSON})
    log = DecisionLog(
        tmp_path / "decisions.jsonl", max_bytes=1 << 20, backups=2, hash_key=KEY, redact_text=False
    )
    assert log.write(d, c)
    log.close()
    (e,) = read_lines(tmp_path / "decisions.jsonl")
    assert e["v"] == 1
    assert e["decision_id"] == d.decision_id
    assert e["time"] == d.decided_at.isoformat()
    assert e["pack"] == d.outcome.pack.to_dict()
    assert e["complaint"]["id"] == "A-1"
    assert e["complaint"]["text"] == "邻居排水纠纷"
    assert e["complaint"]["received_at"] == c.received_at.isoformat()
    assert e["complaint"]["complainant"] == {
        "name": keyed_hash(KEY, "name", NAME),
        "id_number": keyed_hash(KEY, "id_number", ID_NUMBER),
        "phone": keyed_hash(KEY, "phone", PHONE),
    }
    for v in e["complaint"]["complainant"].values():
        assert v.startswith("hmac:") and len(v) == 5 + 16
    assert e["decision"]["category"] == d.outcome.category
    assert [t["rule"] for t in e["decision"]["trace"]] == [t.rule for t in d.outcome.trace]
    assert e["decision"]["rule_pack"]["revision"] == d.outcome.pack.revision


def test_keyed_hash_links_one_person_and_depends_on_the_key() -> None:
    assert keyed_hash(KEY, "phone", "139-4771-2345") == keyed_hash(KEY, "phone", " 13947712345 ")
    assert keyed_hash(KEY, "id_number", "15062719800101002x") == keyed_hash(KEY, "id_number", ID_NUMBER)
    assert keyed_hash(KEY, "phone", PHONE) != keyed_hash(b"another key, 16 bytes+", "phone", PHONE)
    assert keyed_hash(KEY, "name", PHONE) != keyed_hash(KEY, "phone", PHONE)


def test_free_text_is_replaced_by_its_length_unless_kept(triage: Triage, tmp_path: Path) -> None:
    c, d = decide(
        triage,
        {"id": "A-2", "title": "标题", "text": "我叫欧阳娜仁花，邻居排水", "category_hint": "neighbor"},
    )
    log = DecisionLog(tmp_path / "d.jsonl", max_bytes=0, backups=0, hash_key=KEY)  # the default
    log.write(d, c)
    log.close()
    (e,) = read_lines(tmp_path / "d.jsonl")
    cpl = e["complaint"]
    assert "text" not in cpl and "title" not in cpl and "category_hint" not in cpl
    assert (cpl["text_length"], cpl["title_length"], cpl["category_hint_length"]) == (len(c.text), 2, 8)
    assert NAME not in (tmp_path / "d.jsonl").read_text(encoding="utf-8")


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DecisionLog(tmp_path / "d.jsonl", max_bytes=0, backups=0, hash_key=b"short")


def test_load_hash_key_from_file_or_environment(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_bytes(KEY + b"\n")
    assert load_hash_key(f) == KEY
    assert load_hash_key(env={decision_log.KEY_ENV: "k" * 20}) == b"k" * 20
    with pytest.raises(ValueError, match="hash key"):
        load_hash_key(env={})
    with pytest.raises(ValueError, match="16 bytes"):
        load_hash_key(env={decision_log.KEY_ENV: "tiny"})


def test_observer_form_logs_decisions_and_skips_failed_items(triage: Triage, tmp_path: Path) -> None:
    c, d = decide(triage, {"id": "A-3", "text": "邻居排水纠纷"})
    log = DecisionLog(tmp_path / "d.jsonl", max_bytes=0, backups=0, hash_key=KEY)
    log("Triage", c, d, grpc.StatusCode.OK)
    log("Triage", None, None, grpc.StatusCode.INVALID_ARGUMENT)
    log.close()
    assert [e["decision_id"] for e in read_lines(tmp_path / "d.jsonl")] == [d.decision_id]


def test_write_failure_is_counted_not_raised(
    triage: Triage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    m: metrics.Metrics,
) -> None:
    c, d = decide(triage, {"id": "A-4", "text": "邻居排水纠纷", "complainant": PERSON})
    log = DecisionLog(tmp_path / "d.jsonl", max_bytes=0, backups=0, hash_key=KEY, metrics=m)

    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)  # the os module decision_log writes with
    assert log.write(d, c) is False
    monkeypatch.undo()
    assert log.errors == 1
    assert b"fenliu_decision_log_errors_total 1.0" in m.exposition()
    assert all(v not in caplog.text for v in PERSON.values())
    log.close()


# ----------------------------------------------------------------------------------------------------
# Rotation, threads, processes


def test_rotation_by_size_keeps_backups_and_whole_lines(triage: Triage, tmp_path: Path) -> None:
    c, d = decide(triage, {"id": "R", "text": "邻居排水纠纷"})
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, max_bytes=4000, backups=2, hash_key=KEY)
    size = len(log.line(d, c))
    for _ in range(60):
        log.write(d, c)
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["d.jsonl", "d.jsonl.1", "d.jsonl.2", "d.jsonl.lock"]
    for p in (path, Path(f"{path}.1"), Path(f"{path}.2")):
        assert 0 < p.stat().st_size <= 4000
        for line in p.read_text(encoding="utf-8").splitlines():
            assert json.loads(line)["decision_id"] == d.decision_id
    per_file = 4000 // size
    kept = len(read_lines(path))
    assert per_file * 2 < kept <= per_file * 3


def test_threads_write_whole_lines(triage: Triage, tmp_path: Path) -> None:
    c, d = decide(triage, {"id": "T", "text": "邻居排水纠纷"})
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, max_bytes=50_000, backups=100, hash_key=KEY)

    def run() -> None:
        for _ in range(100):
            log.write(d, c)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert len(read_lines(path)) == 800


def _age(p: Path) -> int:
    suffix = p.name.rsplit(".", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def _write_from_process(path: str, n: int, complaint: Complaint, decision: Decision, start: Any) -> None:
    log = DecisionLog(path, max_bytes=30_000, backups=200, hash_key=KEY)
    start.wait(60)  # all processes write at the same time
    for _ in range(n):
        log.write(decision, complaint)
    log.close()


def test_processes_share_one_rotated_log_without_losing_or_tearing_lines(
    triage: Triage, tmp_path: Path
) -> None:
    path = tmp_path / "d.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = []
    start = ctx.Barrier(4)
    for i in range(4):
        c, d = decide(triage, {"id": f"P{i}", "text": "邻居排水纠纷"})
        procs.append(ctx.Process(target=_write_from_process, args=(str(path), 300, c, d, start)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    entries = read_lines(path)  # json.loads of every line: none torn
    assert len(entries) == 1200
    assert sorted({e["complaint"]["id"] for e in entries}) == ["P0", "P1", "P2", "P3"]
    in_order = sorted(
        (p for p in tmp_path.glob("d.jsonl*") if not p.name.endswith(".lock")), key=_age, reverse=True
    )
    ids = [
        json.loads(line)["complaint"]["id"]
        for p in in_order
        for line in p.read_text(encoding="utf-8").splitlines()
    ]
    switches = sum(a != b for a, b in itertools.pairwise(ids))
    assert switches >= 3, "the processes did not write at the same time"
    files = [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    assert len(files) > 5
    assert all(p.stat().st_size <= 30_000 for p in files)


# ----------------------------------------------------------------------------------------------------
# Personal data: never in the decision log nor in the metrics


def test_personal_data_appears_neither_in_the_decision_log_nor_in_metrics(
    triage: Triage, tmp_path: Path, m: metrics.Metrics
) -> None:
    people = [
        {"name": NAME, "id_number": ID_NUMBER, "phone": PHONE},
        {"name": "张三", "id_number": "110105194912310025", "phone": "+86 138-0013-8000"},
    ]
    texts = ["邻居排水纠纷", "拖欠农民工工资", "征地补偿款", "举报村干部", "说不清的事"]
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, max_bytes=1 << 20, backups=1, hash_key=KEY)
    n = 0
    for person in people:
        for i, text in enumerate(texts):
            c, d = decide(
                triage, {"id": f"{n}", "text": text, "people_involved": i * 10, "complainant": person}
            )
            log.write(d, c)
            m.observer("Triage", c, d, grpc.StatusCode.OK)
            n += 1
    log.close()
    logged = path.read_text(encoding="utf-8")
    exposed = m.exposition().decode()
    assert len(logged.splitlines()) == n
    assert "fenliu_decisions_total{" in exposed
    for person in people:
        for field, value in person.items():
            digits = "".join(ch for ch in value if ch.isalnum())
            for text, where in ((logged, "decision log"), (exposed, "metrics")):
                assert value not in text, f"{field} in the {where}"
                assert digits not in text.replace("-", "").replace(" ", ""), f"{field} in the {where}"
            # hashed in the log, not even the hash in the metrics
            assert keyed_hash(KEY, field, value) in logged
            assert keyed_hash(KEY, field, value) not in exposed
    assert '"complainant":{"name":"hmac:' in logged


def test_an_amount_shaped_like_personal_data_is_masked_in_the_decision_log(
    triage: Triage, tmp_path: Path
) -> None:
    """A phone or an id number typed into the amount is masked like one in any text (the amount is a
    number, which a text's masking never saw); an ordinary amount is kept as the number it is."""
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, max_bytes=1 << 20, backups=1, hash_key=KEY)
    typed = [
        ({"amount_yuan": 13947712345}, "13947712345"),
        ({"amount_yuan": 150627800101002.0}, "150627800101002"),
    ]
    for i, (fields, shown) in enumerate(typed):
        c, d = decide(
            triage, {"id": f"n{i}", "text": "拖欠农民工工资", "complainant": {"name": NAME}, **fields}
        )
        log.write(d, c)
        line = path.read_text(encoding="utf-8").splitlines()[-1]
        assert shown not in line, fields
        assert "[phone]" in line or "[id-number]" in line, fields
    c, d = decide(triage, {"id": "plain", "text": "拖欠农民工工资", "amount_yuan": 86000.5})
    log.write(d, c)
    last = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert last["complaint"]["amount_yuan"] == 86000.5
    log.close()


@pytest.mark.parametrize(("flags", "redacted"), [([], True), (["--decision-log-keep-text"], False)])
def test_serve_option_keeps_the_words_only_when_asked(
    triage: Triage, tmp_path: Path, flags: list[str], redacted: bool
) -> None:
    import argparse

    from fenliu.cli.serve import add_serve_arguments, serve_config
    from fenliu.serving.supervisor import build_extensions

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    args = parser.parse_args(
        [
            "--rules",
            str(PACK),
            "--decision-log",
            str(tmp_path / "d.jsonl"),
            "--decision-log-key-file",
            str(key_file),
            *flags,
        ]
    )
    (log,) = [o for o in build_extensions(serve_config(args), triage).observers if isinstance(o, DecisionLog)]
    assert log.redact_text is redacted
    log.close()
